"""Unit tests of the terraform driver: argv, classification, outputs, plan parsing.

No terraform binary is needed: commands are inspected as built, errors are
classified from stderr captured from (or modelled on) real terraform runs in
``tests/fixtures/terraform/stderr``, and the few tests that must run a process
use a tiny shell script standing in for the binary.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from sandbox.drivers.terraform import (
    PLAN_FILE,
    PlanSummary,
    PythonTerraformDriver,
    TerraformDriver,
    TerraformOutput,
    parse_plan_json,
    public_outputs,
    variables_json,
)
from sandbox.drivers.terraform_errors import (
    TerraformAuthError,
    TerraformError,
    TerraformTransientError,
    classify,
    parse_diagnostics,
)
from sandbox.errors import (
    ConflictError,
    InvalidInputError,
    PermanentError,
    RetryableError,
    StateLockedError,
    ToolNotFoundError,
)
from sandbox.proc import Command, CompletedCommand

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "terraform"
STDERR = FIXTURES / "stderr"
CLI_CONFIG_WARNING = "Unable to open CLI configuration file"


def failed(
    stderr: str, *, argv: tuple[str, ...] = ("terraform", "plan", "-no-color"), stdout: str = ""
) -> CompletedCommand:
    """A failed terraform run as :func:`sandbox.proc.run` hands it to a classifier."""
    command = Command(argv=argv, cwd=Path("/work/sandboxes/sb-a/terraform"), timeout=60)
    return CompletedCommand(command=command, returncode=1, stdout=stdout, stderr=stderr)


def canned(name: str) -> str:
    return (STDERR / name).read_text(encoding="utf-8")


def fake_terraform(tmp_path: Path, script: str) -> str:
    """A shell script standing in for the terraform binary; returns its path."""
    binary = tmp_path / "fake-terraform"
    binary.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return str(binary)


# -- argv -------------------------------------------------------------------------


@pytest.fixture
def driver() -> PythonTerraformDriver:
    return PythonTerraformDriver(binary="tofu", timeout=120, lock_timeout="7s")


def test_real_driver_satisfies_the_protocol(driver: PythonTerraformDriver) -> None:
    assert isinstance(driver, TerraformDriver)


def test_every_command_runs_in_the_workdir_non_interactively(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    command = driver.plan_command(tmp_path, tmp_path / "vars.json")
    assert command.cwd == tmp_path
    assert command.timeout == 120
    assert command.env["TF_IN_AUTOMATION"] == "1"
    assert command.env["TF_INPUT"] == "0"
    # An inherited TF_WORKSPACE would override the sandbox's workspace.
    assert command.env["TF_WORKSPACE"] == ""
    assert command.argv[0] == "tofu"


def test_init_from_module_argv(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    module = tmp_path / "module"
    argv = driver.init_command(tmp_path / "work", module).argv
    assert argv[:2] == ("tofu", "init")
    assert {"-no-color", "-input=false", "-lock-timeout=7s"} <= set(argv)
    assert f"-from-module={module.resolve()}" in argv
    assert not any(arg.startswith("-from-module") for arg in driver.init_command(tmp_path).argv)


def test_workspace_select_or_create_argv(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    argv = driver.select_workspace_command(tmp_path, "sb-a").argv
    assert argv[:3] == ("tofu", "workspace", "select")
    assert "-or-create=true" in argv
    assert argv[-1] == "sb-a"


@pytest.mark.parametrize("destroy", [False, True])
def test_plan_argv_saves_a_plan_file(driver: PythonTerraformDriver, tmp_path: Path, destroy: bool) -> None:
    var_file = tmp_path / "vars.json"
    argv = driver.plan_command(tmp_path, var_file, destroy=destroy).argv
    assert argv[:2] == ("tofu", "plan")
    assert {"-no-color", "-input=false", "-lock-timeout=7s", f"-var-file={var_file}", f"-out={PLAN_FILE}"} <= set(argv)
    assert ("-destroy" in argv) is destroy


def test_apply_argv_with_and_without_a_saved_plan(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    var_file = tmp_path / "vars.json"
    direct = driver.apply_command(tmp_path, var_file=var_file).argv
    assert direct[:2] == ("tofu", "apply")
    assert {"-auto-approve", "-input=false", "-no-color", "-lock-timeout=7s", f"-var-file={var_file}"} <= set(direct)
    saved = driver.apply_command(tmp_path, plan_file="/w/plan.tfplan").argv
    assert saved[-1] == "/w/plan.tfplan"
    # Terraform refuses variables (and needs no approval) for a saved plan.
    assert not any(arg.startswith(("-var", "-auto-approve")) for arg in saved)


def test_destroy_argv(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    var_file = tmp_path / "vars.json"
    argv = driver.destroy_command(tmp_path, var_file).argv
    assert argv[:2] == ("tofu", "destroy")
    assert {"-auto-approve", "-input=false", "-no-color", "-lock-timeout=7s", f"-var-file={var_file}"} <= set(argv)


def test_argv_refuses_dict_options_that_would_leak_temp_files(driver: PythonTerraformDriver) -> None:
    with pytest.raises(TypeError):
        driver.argv("plan", var={"cluster_name": "sb-a"})


def test_building_commands_reads_no_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # python-terraform's constructor would parse ./terraform.tfstate.
    (tmp_path / "terraform.tfstate").write_text("not json", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert PythonTerraformDriver().argv("version")[1] == "version"


# -- variables --------------------------------------------------------------------


def test_variables_json_unwraps_and_collects_secrets(tmp_path: Path) -> None:
    text, secrets = variables_json(
        {"cluster_name": "sb-a", "node_count": 3, "db": {"password": SecretStr("hunter2")}, "dir": tmp_path}
    )
    document = json.loads(text)
    assert document["db"]["password"] == "hunter2"
    assert document["dir"] == str(tmp_path)
    assert document["node_count"] == 3
    assert secrets == ("hunter2",)


@pytest.mark.parametrize("variables", [{"bad name": 1}, {"-var": 1}, {"ok": object()}])
def test_variables_json_rejects_bad_input(variables: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        variables_json(variables)


# -- error classification -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in STDERR.glob("retryable_*.txt")))
def test_network_errors_and_rate_limits_are_retryable(name: str) -> None:
    error = classify(failed(canned(name)))
    assert isinstance(error, TerraformTransientError)
    assert error.retryable


@pytest.mark.parametrize("name", sorted(p.name for p in STDERR.glob("auth_*.txt")))
def test_rejected_credentials_are_permanent_with_terraforms_message(name: str) -> None:
    stderr = canned(name)
    error = classify(failed(stderr))
    assert isinstance(error, TerraformAuthError)
    assert isinstance(error, PermanentError)
    assert not error.retryable
    summary = parse_diagnostics(stderr)[0][-1].summary
    assert summary[:60] in str(error)


def test_state_lock_is_retryable_and_names_the_holder() -> None:
    stderr = canned("state_locked.txt")
    error = classify(failed(stderr, argv=("terraform", "apply", "-no-color")))
    assert isinstance(error, StateLockedError)
    assert isinstance(error, RetryableError)
    lock_id = re.search(r"ID:\s+(\S+)", stderr)
    who = re.search(r"Who:\s+(\S+)", stderr)
    assert lock_id and who
    message = str(error)
    assert lock_id.group(1) in message
    assert who.group(1) in message
    assert "apply" in message
    assert "\n" not in message


def test_state_lock_failing_on_credentials_is_permanent() -> None:
    stderr = (
        "\nError: Error acquiring the state lock\n\nError message: operation error DynamoDB: PutItem, "
        "https response error StatusCode: 400, api error ExpiredTokenException: The security token "
        "included in the request is expired\n"
    )
    assert isinstance(classify(failed(stderr)), TerraformAuthError)


@pytest.mark.parametrize(
    ("name", "terraform_says"),
    [
        ("missing_variable.txt", 'The root module input variable "name" is not set'),
        ("invalid_reference.txt", 'An input variable with the name "nope" has not been declared'),
        ("destroy_blocked.txt", "external resources still exist"),
    ],
)
def test_configuration_errors_are_permanent_with_terraforms_message(name: str, terraform_says: str) -> None:
    stderr = canned(name)
    assert terraform_says in " ".join(stderr.split())
    error = classify(failed(stderr))
    assert type(error) is TerraformError
    assert not error.retryable
    message = str(error)
    assert terraform_says in message
    assert "\n" not in message
    assert CLI_CONFIG_WARNING not in message
    assert "/work/sandboxes/sb-a/terraform" in message


def test_a_failing_provisioner_reports_its_output_not_its_script() -> None:
    error = classify(failed(canned("destroy_blocked.txt"), argv=("terraform", "destroy", "-no-color")))
    message = str(error)
    assert "loadbalancer-web" in message
    assert "local-exec provisioner error" in message
    assert "rm -rf" not in message


def test_messages_are_bounded() -> None:
    stderr = "\nError: Invalid value\n\n" + "very long detail " * 2000
    assert len(str(classify(failed(stderr)))) < 1000


def test_cli_config_warning_alone_is_never_the_message() -> None:
    warning_only = canned("state_locked.txt").split("Error:", 1)[0]
    assert CLI_CONFIG_WARNING in warning_only
    error = classify(failed(warning_only, stdout="No state file was found!"))
    assert isinstance(error, TerraformError)
    assert "No state file was found!" in str(error)
    assert CLI_CONFIG_WARNING not in str(error)


def test_secret_variables_never_reach_errors(tmp_path: Path) -> None:
    seen = tmp_path / "argv.txt"
    binary = fake_terraform(
        tmp_path,
        f'echo "$@" > "{seen}"\n'
        'for arg in "$@"; do case "$arg" in -var-file=*) cat "${arg#-var-file=}" >&2;; esac; done\n'
        'printf "\\nError: Invalid value for variable\\n\\nrejected\\n" >&2\nexit 1\n',
    )
    driver = PythonTerraformDriver(binary=binary, timeout=30)
    with pytest.raises(TerraformError) as raised:
        driver.plan(tmp_path, {"cluster_name": "sb-a", "token": SecretStr("hunter2-s3cr3t")})
    assert "hunter2-s3cr3t" not in str(raised.value)
    assert "hunter2-s3cr3t" not in raised.value.stderr_tail
    # The var-file lived only as long as the command.
    var_file = re.search(r"-var-file=(\S+)", seen.read_text(encoding="utf-8"))
    assert var_file and not Path(var_file.group(1)).exists()


def test_missing_binary_is_tool_not_found(tmp_path: Path) -> None:
    driver = PythonTerraformDriver(binary="terraform-does-not-exist-here")
    with pytest.raises(ToolNotFoundError):
        driver.workspaces(tmp_path)


# -- outputs ------------------------------------------------------------------------


def test_sensitive_outputs_are_hidden_in_repr_and_str() -> None:
    token = "3f0c9a4e-7b1d-4a52-9e3f-8c2d1b0a9f7e"
    outputs = {
        "cluster_token": TerraformOutput(value=token, sensitive=True),
        "cluster_name": TerraformOutput(value="sb-a", sensitive=False),
    }
    renderings = (
        repr(outputs),
        str(outputs),
        f"{outputs['cluster_token']}",
        repr(outputs["cluster_token"]),
        str(list(outputs["cluster_token"].__repr_args__())),  # what pydantic builds rich/devtools views from
    )
    for shown in renderings:
        assert token not in shown
        assert "<sensitive>" in shown
    assert "sb-a" in str(outputs["cluster_name"])
    assert outputs["cluster_token"].value == token
    assert public_outputs(outputs) == {"cluster_name": "sb-a"}


def test_outputs_parses_output_json(tmp_path: Path) -> None:
    document = {
        "cluster_token": {"sensitive": True, "type": "string", "value": "s3cr3t"},
        "node_count": {"sensitive": False, "type": "number", "value": 3},
    }
    binary = fake_terraform(tmp_path, f"cat <<'EOF'\n{json.dumps(document)}\nEOF\n")
    outputs = PythonTerraformDriver(binary=binary, timeout=30).outputs(tmp_path)
    assert {name: (o.value, o.sensitive) for name, o in outputs.items()} == {
        name: (item["value"], item["sensitive"]) for name, item in document.items()
    }


# -- plans ---------------------------------------------------------------------------


def _addresses_in_plan_text(text: str, phrase: str) -> list[str]:
    return sorted(re.findall(rf"# (\S+) {phrase}", text))


def test_plan_summary_from_show_json_matches_terraforms_own_text() -> None:
    document = json.loads((FIXTURES / "plan.json").read_text(encoding="utf-8"))
    text = (FIXTURES / "plan.txt").read_text(encoding="utf-8")
    summary = parse_plan_json(document, text=text, plan_file="/w/p.tfplan")
    assert sorted(summary.add) == _addresses_in_plan_text(text, "will be created")
    assert sorted(summary.change) == _addresses_in_plan_text(text, "will be updated in-place")
    assert sorted(summary.destroy) == _addresses_in_plan_text(text, "will be destroyed")
    assert sorted(summary.replace) == _addresses_in_plan_text(text, "must be replaced")
    assert summary.summary_line() in text
    assert summary.is_destructive
    assert summary.plan_file == "/w/p.tfplan"


def test_replacement_in_either_order_and_no_ops() -> None:
    document = {
        "format_version": "1.2",
        "resource_changes": [
            {"address": "a.x", "change": {"actions": ["create", "delete"]}},
            {"address": "b.x", "change": {"actions": ["delete", "create"]}},
            {"address": "c.x", "change": {"actions": ["no-op"]}},
            {"address": "data.d.x", "change": {"actions": ["read"]}},
        ],
    }
    summary = parse_plan_json(document)
    assert summary.replace == ["a.x", "b.x"]
    assert not (summary.add or summary.change or summary.destroy)
    assert summary.is_destructive


def test_in_place_changes_are_not_destructive() -> None:
    summary = PlanSummary(change=["terraform_data.cluster"], add=["terraform_data.extra"])
    assert not summary.is_destructive
    assert summary.has_changes
    assert not PlanSummary().has_changes


def test_an_empty_configuration_plans_nothing_and_garbage_is_an_error() -> None:
    assert not parse_plan_json({"format_version": "1.2"}).has_changes
    with pytest.raises(TerraformError):
        parse_plan_json({"values": {}})


# -- prepare's safety checks (before any command runs) -----------------------------------


def _module(tmp_path: Path) -> Path:
    module = tmp_path / "module"
    module.mkdir()
    (module / "main.tf").write_text('resource "terraform_data" "x" {}\n', encoding="utf-8")
    return module


def test_prepare_never_touches_a_foreign_terraform_directory(tmp_path: Path) -> None:
    workdir = tmp_path / "someone-elses"
    workdir.mkdir()
    (workdir / "main.tf").write_text('resource "terraform_data" "mine" {}\n', encoding="utf-8")
    driver = PythonTerraformDriver(binary="terraform-does-not-exist-here")
    with pytest.raises(ConflictError):
        driver.prepare(workdir, _module(tmp_path), "sb-a")
    assert (workdir / "main.tf").read_text(encoding="utf-8") == 'resource "terraform_data" "mine" {}\n'


def test_prepare_rejects_a_module_without_terraform_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError):
        PythonTerraformDriver().prepare(tmp_path / "work", tmp_path / "empty", "sb-a")


@pytest.mark.parametrize("workspace", ["", "a/b", "-x", "x" * 91])
def test_prepare_rejects_invalid_workspace_names(tmp_path: Path, workspace: str) -> None:
    with pytest.raises(InvalidInputError):
        PythonTerraformDriver().prepare(tmp_path / "work", _module(tmp_path), workspace)
