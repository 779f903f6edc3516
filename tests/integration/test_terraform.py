"""The terraform driver against the real ``terraform`` binary and the example module.

The example fleet repository's cluster module (``examples/fleet-repo/infra/cluster``)
uses only the built-in ``terraform_data`` resource, so nothing is downloaded.
Every test works in its own temporary directories; terraform runs with a
temporary HOME, no plugin cache and a CLI configuration file that does not
exist (terraform then warns on stderr, which must not disturb anything).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox.drivers.terraform import PythonTerraformDriver, TerraformOutput
from sandbox.drivers.terraform_errors import TerraformError
from sandbox.errors import PermanentError, StateLockedError

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires_tool("terraform"),
]

REPO = Path(__file__).resolve().parents[2]
CLUSTER_MODULE = REPO / "examples" / "fleet-repo" / "infra" / "cluster"
FIXTURE_MODULES = REPO / "tests" / "fixtures" / "terraform" / "modules"


@pytest.fixture(scope="module")
def terraform_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """HOME-independent terraform without a plugin cache or inherited overrides."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("TF_CLI_CONFIG_FILE", str(home / "missing.tfrc"))
        for name in list(os.environ):
            if name in {"TF_PLUGIN_CACHE_DIR", "TF_WORKSPACE", "TF_DATA_DIR", "TF_LOG"} or name.startswith(
                ("TF_CLI_ARGS", "TF_VAR_")
            ):
                patch.delenv(name)
        yield


@dataclass
class Sandbox:
    """One sandbox's terraform working directory, workspace and variables."""

    workdir: Path
    workspace: str
    simulation_dir: Path
    variables: dict[str, Any]


def new_sandbox(root: Path, name: str, **overrides: Any) -> Sandbox:
    simulation_dir = root / name / "simulated-cluster"
    variables: dict[str, Any] = {
        "cluster_name": name,
        "kubernetes_version": "1.31",
        "node_count": 2,
        "node_size": "small",
        "simulation_dir": str(simulation_dir),
        **overrides,
    }
    return Sandbox(root / name / "terraform", name, simulation_dir, variables)


@pytest.fixture(scope="module")
def driver(terraform_env: None) -> PythonTerraformDriver:
    return PythonTerraformDriver(timeout=120, lock_timeout="10s")


@pytest.fixture(scope="module")
def applied(
    driver: PythonTerraformDriver, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Sandbox, dict[str, TerraformOutput]]:
    """A sandbox created once for the tests that only read it."""
    sandbox = new_sandbox(tmp_path_factory.mktemp("sandboxes"), "sb-a")
    driver.prepare(sandbox.workdir, CLUSTER_MODULE, sandbox.workspace)
    outputs = driver.apply(sandbox.workdir, sandbox.variables)
    return sandbox, outputs


def test_apply_creates_the_cluster_and_its_outputs(
    driver: PythonTerraformDriver, applied: tuple[Sandbox, dict[str, TerraformOutput]]
) -> None:
    sandbox, outputs = applied
    values = {name: out.value for name, out in outputs.items()}
    for name in ("cluster_name", "kubernetes_version", "node_count", "node_size"):
        assert values[name] == sandbox.variables[name]
    assert values["cluster_endpoint"] == f"simulated://{sandbox.simulation_dir.resolve()}"
    assert (sandbox.simulation_dir / "external").is_dir()
    assert driver.has_state(sandbox.workdir, sandbox.workspace)
    assert sandbox.workspace in driver.workspaces(sandbox.workdir)
    assert driver.outputs(sandbox.workdir) == outputs


def test_the_cluster_token_is_sensitive_and_never_shown(
    applied: tuple[Sandbox, dict[str, TerraformOutput]],
) -> None:
    _, outputs = applied
    token = outputs["cluster_token"]
    assert token.sensitive
    assert isinstance(token.value, str) and token.value
    for shown in (str(outputs), repr(outputs), str(token), repr(token), f"{token}"):
        assert token.value not in shown
    assert not any(out.sensitive for name, out in outputs.items() if name != "cluster_token")


def test_prepare_again_is_idempotent(
    driver: PythonTerraformDriver, applied: tuple[Sandbox, dict[str, TerraformOutput]]
) -> None:
    sandbox, outputs = applied
    driver.prepare(sandbox.workdir, CLUSTER_MODULE, sandbox.workspace)
    assert driver.has_state(sandbox.workdir, sandbox.workspace)
    assert driver.outputs(sandbox.workdir) == outputs
    assert not driver.plan(sandbox.workdir, sandbox.variables).has_changes


@pytest.mark.parametrize(
    ("override", "value"), [("kubernetes_version", "1.32"), ("node_count", 5), ("node_size", "large")]
)
def test_version_and_scale_changes_are_in_place(
    driver: PythonTerraformDriver,
    applied: tuple[Sandbox, dict[str, TerraformOutput]],
    override: str,
    value: Any,
) -> None:
    sandbox, _ = applied
    plan = driver.plan(sandbox.workdir, {**sandbox.variables, override: value})
    assert plan.change == ["terraform_data.cluster"]
    assert not plan.is_destructive
    assert plan.summary_line() in plan.text


@pytest.mark.parametrize(("override", "value"), [("cluster_name", "sb-renamed"), ("region", "local-2")])
def test_name_and_region_changes_replace_the_cluster(
    driver: PythonTerraformDriver,
    applied: tuple[Sandbox, dict[str, TerraformOutput]],
    override: str,
    value: Any,
) -> None:
    sandbox, _ = applied
    plan = driver.plan(sandbox.workdir, {**sandbox.variables, override: value})
    assert "terraform_data.cluster" in plan.replace
    assert plan.is_destructive
    assert plan.summary_line() in plan.text


def test_a_second_sandbox_in_another_workspace_is_isolated(
    driver: PythonTerraformDriver,
    applied: tuple[Sandbox, dict[str, TerraformOutput]],
    tmp_path: Path,
) -> None:
    first, first_outputs = applied
    second = new_sandbox(tmp_path, "sb-b")
    driver.prepare(second.workdir, CLUSTER_MODULE, second.workspace)
    second_outputs = driver.apply(second.workdir, second.variables)
    assert second_outputs["cluster_token"].value != first_outputs["cluster_token"].value

    # A third workspace in the same working directory starts empty ...
    driver.prepare(second.workdir, CLUSTER_MODULE, "sb-c")
    assert not driver.has_state(second.workdir, "sb-c")
    assert driver.has_state(second.workdir, second.workspace)
    fresh = driver.plan(second.workdir, new_sandbox(tmp_path, "sb-c").variables)
    assert sorted(fresh.add) == ["terraform_data.cluster", "terraform_data.network"]
    # ... and the first sandbox never saw any of it.
    assert driver.outputs(first.workdir) == first_outputs
    assert driver.workspaces(first.workdir) == ["default", first.workspace]


def test_applying_a_saved_plan_upgrades_in_place_and_keeps_the_token(
    driver: PythonTerraformDriver, tmp_path: Path
) -> None:
    sandbox = new_sandbox(tmp_path, "sb-upgrade")
    driver.prepare(sandbox.workdir, CLUSTER_MODULE, sandbox.workspace)
    before = driver.apply(sandbox.workdir, sandbox.variables)
    upgraded = {**sandbox.variables, "kubernetes_version": "1.32"}
    plan = driver.plan(sandbox.workdir, upgraded)
    assert plan.plan_file and Path(plan.plan_file).is_file()
    after = driver.apply(sandbox.workdir, upgraded, plan=plan)
    assert after["kubernetes_version"].value == upgraded["kubernetes_version"]
    assert after["cluster_token"].value == before["cluster_token"].value
    assert not Path(plan.plan_file).exists()


def test_destroy_fails_while_external_resources_dangle(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    sandbox = new_sandbox(tmp_path, "sb-destroy")
    driver.prepare(sandbox.workdir, CLUSTER_MODULE, sandbox.workspace)
    driver.apply(sandbox.workdir, sandbox.variables)
    dangling = sandbox.simulation_dir / "external" / "loadbalancer-web"
    dangling.write_text("simulated load balancer\n", encoding="utf-8")

    with pytest.raises(TerraformError) as raised:
        driver.destroy(sandbox.workdir, sandbox.variables)
    assert isinstance(raised.value, PermanentError) and not raised.value.retryable
    assert dangling.name in str(raised.value)
    assert "external resources still exist" in str(raised.value)
    assert driver.has_state(sandbox.workdir, sandbox.workspace)
    assert sandbox.simulation_dir.is_dir()

    dangling.unlink()
    driver.destroy(sandbox.workdir, sandbox.variables)
    assert not driver.has_state(sandbox.workdir, sandbox.workspace)
    assert not sandbox.simulation_dir.exists()
    driver.delete_workspace(sandbox.workdir, sandbox.workspace)
    assert sandbox.workspace not in driver.workspaces(sandbox.workdir)
    driver.delete_workspace(sandbox.workdir, sandbox.workspace)  # already gone: nothing to do


def test_force_destroy_applied_first_deletes_dangling_resources(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    sandbox = new_sandbox(tmp_path, "sb-forced")
    driver.prepare(sandbox.workdir, CLUSTER_MODULE, sandbox.workspace)
    driver.apply(sandbox.workdir, sandbox.variables)
    (sandbox.simulation_dir / "external" / "volume-data").write_text("simulated volume\n", encoding="utf-8")
    forced = {**sandbox.variables, "force_destroy": True}
    assert not driver.plan(sandbox.workdir, forced).is_destructive
    driver.apply(sandbox.workdir, forced)
    driver.destroy(sandbox.workdir, forced)
    assert not driver.has_state(sandbox.workdir, sandbox.workspace)
    assert not sandbox.simulation_dir.exists()


def test_destroy_leaves_a_directory_without_the_module_marker(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    sandbox = new_sandbox(tmp_path, "sb-marker")
    driver.prepare(sandbox.workdir, CLUSTER_MODULE, sandbox.workspace)
    driver.apply(sandbox.workdir, sandbox.variables)
    for marker in sandbox.simulation_dir.glob(".fleet-sandbox-simulation"):
        marker.unlink()
    driver.destroy(sandbox.workdir, sandbox.variables)
    assert sandbox.simulation_dir.is_dir()


def test_the_module_refuses_a_foreign_simulation_dir(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    sandbox = new_sandbox(tmp_path, "sb-foreign")
    sandbox.simulation_dir.mkdir(parents=True)
    precious = sandbox.simulation_dir / "precious.txt"
    precious.write_text("not a simulation\n", encoding="utf-8")
    driver.prepare(sandbox.workdir, CLUSTER_MODULE, sandbox.workspace)
    with pytest.raises(TerraformError) as raised:
        driver.apply(sandbox.workdir, sandbox.variables)
    assert "not a simulation directory" in str(raised.value)
    assert precious.is_file()


def test_prepare_refreshes_a_changed_module_and_keeps_state(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    module = tmp_path / "module"
    shutil.copytree(CLUSTER_MODULE, module)
    sandbox = new_sandbox(tmp_path, "sb-refresh")
    driver.prepare(sandbox.workdir, module, sandbox.workspace)
    driver.apply(sandbox.workdir, sandbox.variables)
    with (module / "outputs.tf").open("a", encoding="utf-8") as out:
        out.write('\noutput "region" {\n  value = var.region\n}\n')
    driver.prepare(sandbox.workdir, module, sandbox.workspace)
    assert (sandbox.workdir / "outputs.tf").read_text(encoding="utf-8") == (module / "outputs.tf").read_text(
        encoding="utf-8"
    )
    assert driver.has_state(sandbox.workdir, sandbox.workspace)
    assert not driver.plan(sandbox.workdir, sandbox.variables).is_destructive


@contextmanager
def lock_held(driver: PythonTerraformDriver, tmp_path: Path, hold_seconds: float = 60) -> Iterator[Path]:
    """A second terraform process applying the slow module holds the state lock of the yielded workdir.

    The lock is held until the test leaves the block (or ``hold_seconds`` pass).
    """
    gate = tmp_path / "gate"
    gate.mkdir()
    workdir = tmp_path / "terraform"
    driver.prepare(workdir, FIXTURE_MODULES / "slow", "sb-lock")
    holder_errors: list[BaseException] = []

    def hold_the_lock() -> None:
        try:
            driver.apply(workdir, {"gate_dir": str(gate), "hold_seconds": hold_seconds})
        except BaseException as exc:  # reported by the main thread
            holder_errors.append(exc)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        # Wait (bounded) until the first apply is inside its provisioner, holding the lock.
        deadline = time.monotonic() + 60
        while not (gate / "started").exists() and holder.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (gate / "started").exists(), holder_errors
        yield workdir
    finally:
        (gate / "release").touch()
        holder.join(timeout=120)
    assert not holder_errors


def test_a_held_state_lock_waits_the_lock_timeout_then_raises_state_locked(
    driver: PythonTerraformDriver, tmp_path: Path
) -> None:
    with lock_held(driver, tmp_path) as workdir:
        impatient = PythonTerraformDriver(timeout=60, lock_timeout="2s")
        started = time.monotonic()
        with pytest.raises(StateLockedError) as raised:
            impatient.apply(workdir, {"gate_dir": str(tmp_path / "gate")})
        waited = time.monotonic() - started
        assert raised.value.retryable
        assert "the state is locked" in str(raised.value)
        assert waited >= 2.0, waited  # it waited for the lock before giving up
        assert waited < 30, waited


def test_a_lock_released_within_the_lock_timeout_is_waited_for(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    with lock_held(driver, tmp_path, hold_seconds=2) as workdir:
        patient = PythonTerraformDriver(timeout=60, lock_timeout="60s")
        started = time.monotonic()
        outputs = patient.apply(workdir, {"gate_dir": str(tmp_path / "gate"), "hold_seconds": 2})
        waited = time.monotonic() - started
    assert outputs == {}
    assert patient.has_state(workdir, "sb-lock")
    assert waited >= 1.0, waited  # the holder still had the lock for most of its two seconds


def test_an_invalid_reference_fails_at_once_with_terraforms_message(
    driver: PythonTerraformDriver, tmp_path: Path
) -> None:
    workdir = tmp_path / "terraform"
    driver.prepare(workdir, FIXTURE_MODULES / "invalid_reference", "sb-invalid")
    with pytest.raises(PermanentError) as raised:
        driver.plan(workdir, {})
    assert not raised.value.retryable
    assert "Reference to undeclared input variable" in str(raised.value)
    assert "cluster_nmae" in str(raised.value)


def test_a_syntax_error_fails_prepare_with_terraforms_message(driver: PythonTerraformDriver, tmp_path: Path) -> None:
    with pytest.raises(PermanentError) as raised:
        driver.prepare(tmp_path / "terraform", FIXTURE_MODULES / "invalid_syntax", "sb-invalid")
    assert not raised.value.retryable
    assert "Invalid expression" in str(raised.value)
    assert "Unable to open CLI configuration file" not in str(raised.value)


def test_missing_variables_fail_permanently(
    driver: PythonTerraformDriver, applied: tuple[Sandbox, dict[str, TerraformOutput]]
) -> None:
    sandbox, _ = applied
    incomplete = {k: v for k, v in sandbox.variables.items() if k != "node_size"}
    with pytest.raises(TerraformError) as raised:
        driver.plan(sandbox.workdir, incomplete)
    assert '"node_size" is not set' in str(raised.value)


def test_a_plan_tells_the_outputs_the_module_declares_and_which_are_sensitive(
    driver: PythonTerraformDriver, tmp_path: Path
) -> None:
    sandbox = new_sandbox(tmp_path, "sb-plan-outputs")
    driver.prepare(sandbox.workdir, CLUSTER_MODULE, sandbox.workspace)

    plan = driver.plan(sandbox.workdir, sandbox.variables)

    assert plan.outputs["cluster_token"] is True
    assert plan.outputs["cluster_endpoint"] is False
    assert {"cluster_name", "kubernetes_version"} <= set(plan.outputs)
    assert not driver.has_state(sandbox.workdir, sandbox.workspace)  # known before anything exists
