"""No secret in any output or store: the redaction registry and where it is applied (issue 17, item 2).

The registry is process-wide, so every value here is unique to its test (and
long enough to be registered): nothing is forgotten between tests.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import pickle
import stat
import sys
from pathlib import Path

import pytest
import yaml

from sandbox import redaction
from sandbox.config import FleetConfig, load_config
from sandbox.database import open_engine
from sandbox.demo import demo_config
from sandbox.drivers.git_hosting import GitHostingError, GitHubHosting
from sandbox.drivers.terraform import private_state
from sandbox.errors import CommandFailedError, ConfigError, PermanentError, SandboxError
from sandbox.hardening import check_credentials_transport, is_loopback, private_directory, private_file
from sandbox.inventory import Inventory, InventoryError, utcnow
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus, Stage
from sandbox.proc import Command, run
from sandbox.redaction import MASK, RedactingFilter, redact, redact_url
from sandbox.wiring import build_hosting
from tests.fakes.github_api_server import running_github_api

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAAunitTestKeyFirstLine0123456789abcdefghij\n"
    "unitTestKeySecondLineOfTheKeyBody9876543210ZYXWVUTSRQPONMLKJIH\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


# -- the registry ---------------------------------------------------------------------------------


def test_a_registered_secret_is_masked_in_every_form_it_travels_in() -> None:
    token = "tok-forms-7f3e1a9c5b"
    redaction.register_secret(token)
    encoded = base64.b64encode(token.encode()).decode()
    text = f"a {token} b {encoded}"
    assert redact(text) == f"a {MASK} b {MASK}"


def test_a_multi_line_key_is_masked_whole_collapsed_and_line_by_line() -> None:
    redaction.register_secret(PEM)
    first, second = PEM.splitlines()[1:3]
    assert redact(f"key:\n{PEM}") == f"key:\n{MASK}"
    assert first not in redact(" ".join(PEM.split()))  # a one-line message joins the lines
    assert redact(f"tail …{second[5:]}") != ""  # a cut line is not a registered form: no crash
    assert redact(f"line {second} here") == f"line {MASK} here"
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in redact(PEM.splitlines()[0])  # the armour is not secret


def test_short_values_are_not_registered() -> None:
    redaction.register_secret("abc12")
    redaction.register_secret(None)
    assert redact("abc12 stays") == "abc12 stays"
    assert redact("x abc12 y", ["abc12"]) == f"x {MASK} y"  # a caller's own secret still goes


def test_url_credentials_and_basic_auth_are_registered() -> None:
    url = "https://fleet-bot:url-pass-5d2c8b0e@git.example.test/fleet.git"
    redaction.register_url_credentials(url)
    basic = base64.b64encode(b"fleet-bot:url-pass-5d2c8b0e").decode()
    assert redact(f"Authorization: Basic {basic}") == f"Authorization: Basic {MASK}"
    assert redact("pass url-pass-5d2c8b0e") == f"pass {MASK}"
    assert redact_url("clone https://someone:else-4422@host/x failed") == "clone https://***@host/x failed"
    assert redact_url(None) is None


def test_a_kubeconfig_is_taken_apart() -> None:
    key = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIBOgIBAAJBAKunitTestKubeconfigClientKeyLine0123456789\n"
        "-----END RSA PRIVATE KEY-----\n"
    )
    key_data = base64.b64encode(key.encode()).decode()
    kubeconfig = f"""apiVersion: v1
kind: Config
users:
- name: admin
  user:
    token: kube-unit-token-31c9e7a5
    client-key-data: {key_data}
    password: kube-unit-password-8d7e
"""
    redaction.register_kubeconfig(kubeconfig)
    assert redact("Bearer kube-unit-token-31c9e7a5") == f"Bearer {MASK}"
    assert redact(f"data {key_data}") == f"data {MASK}"
    assert redact(key.splitlines()[1]) == MASK
    assert redact("pw kube-unit-password-8d7e") == f"pw {MASK}"
    redaction.register_kubeconfig("not: [a kubeconfig")  # still registered whole, never an exception


# -- where it is applied ------------------------------------------------------------------------


def test_errors_are_redacted_when_made_printed_and_pickled() -> None:
    error = CommandFailedError("echo err-late-6a1f0c93e2", returncode=1, stderr_tail="err-late-6a1f0c93e2")
    assert "err-late" in str(error)  # not known yet
    redaction.register_secret("err-late-6a1f0c93e2")  # known later: terraform's outputs read after its apply failed
    assert str(error) == f"echo {MASK}"
    assert repr(error) == f"CommandFailedError('echo {MASK}')"
    restored = pickle.loads(pickle.dumps(error))  # what Prefect persists as the failed task's result
    assert restored.args == (f"echo {MASK}",) and restored.stderr_tail == MASK
    redaction.register_secret("err-early-2b7d4e6f1a")
    assert SandboxError("x err-early-2b7d4e6f1a").args == (f"x {MASK}",)


def test_the_log_filter_redacts_messages_arguments_and_tracebacks() -> None:
    redaction.register_secret("log-secret-9c4a2e7b")
    logger = logging.getLogger("tests.redaction.propagated")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    parent = logging.getLogger("tests.redaction")
    parent.addHandler(handler)
    handler.addFilter(RedactingFilter())  # on the handler: records propagated from a child logger too
    try:
        logger.warning("token %s sent", "log-secret-9c4a2e7b")
        try:
            raise PermanentError("failed with log-secret-9c4a2e7b")
        except PermanentError:
            try:
                raise ValueError("library said log-secret-9c4a2e7b")  # noqa: TRY301 - a foreign exception
            except ValueError:
                logger.exception("boom")
    finally:
        parent.removeHandler(handler)
    text = stream.getvalue()
    assert "log-secret-9c4a2e7b" not in text and text.count(MASK) >= 3, text
    assert "Traceback" in text


def test_install_log_redaction_covers_prefect_run_loggers() -> None:
    redaction.install_log_redaction()
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", "fleet_sandbox"):
        logger = logging.getLogger(name)
        assert any(isinstance(f, RedactingFilter) for f in logger.filters)
        assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in logger.handlers)


def test_a_command_printing_a_registered_secret_it_was_never_given(tmp_path: Path) -> None:
    redaction.register_secret("proc-env-secret-3e8b")
    script = "import os, sys; print(os.environ['X']); sys.stderr.write(os.environ['X']); sys.exit(3)"
    command = Command(argv=(sys.executable, "-c", script), cwd=tmp_path, timeout=30, env={"X": "proc-env-secret-3e8b"})
    done = run(command, check=False, timeout_is_retryable=True)
    # The output is the caller's data (terraform output -json is parsed): left as it is ...
    assert done.stdout.strip() == "proc-env-secret-3e8b"
    # ... and masked wherever it leaves: the error, its tail, a log line.
    with pytest.raises(CommandFailedError) as raised:
        run(command, timeout_is_retryable=True)
    assert "proc-env-secret-3e8b" not in str(raised.value) + raised.value.stderr_tail
    assert MASK in raised.value.stderr_tail


def test_a_git_host_echoing_the_authorization_header_never_shows_the_token() -> None:
    token = "ghp_unitEchoToken0123456789abcdefABCD"
    with running_github_api(token="another-token-entirely-0000", echo_authorization=True) as github:
        hosting = GitHubHosting(github.url, "example-org/fleet-infra", token)
        with pytest.raises(GitHostingError) as raised:
            hosting.open_pull_request(head="OPS-1-x", base="main", title="t", body="b")
    message = str(raised.value)
    assert "Bad credentials" in message and f"Bearer {MASK}" in message and token not in message


def _config(tmp_path: Path, **hosting: str) -> FleetConfig:
    raw = demo_config(tmp_path)
    raw["drivers"]["git_hosting"] = {"type": "github", "repository": "example-org/fleet-infra", **hosting}  # type: ignore[index]
    return FleetConfig.model_validate({**raw, "base_dir": tmp_path})


def test_a_token_is_never_sent_over_plain_http_but_to_this_machine(tmp_path: Path) -> None:
    from sandbox.drivers.git import GitCli

    plain = _config(tmp_path, api_url="http://api.github.example.test")
    with pytest.raises(ConfigError, match=r"drivers.git_hosting.api_url http://api.github.example.test is plain HTTP"):
        build_hosting(plain, GitCli(), github_token="ghp_plainHttpToken0123456789")
    assert build_hosting(_config(tmp_path, api_url="http://127.0.0.1:9"), GitCli(), github_token="ghp_loopback123")
    assert build_hosting(_config(tmp_path), GitCli(), github_token="ghp_httpsToken0123456")
    build_hosting(plain, GitCli(), github_token=None)  # no token, nothing sent: the manual pull request
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.test") and not is_loopback(None)
    check_credentials_transport("oci://registry.example.test/x", "the registry", plain_http=False)
    with pytest.raises(ConfigError, match="the registry oci://registry.example.test/x is plain HTTP"):
        check_credentials_transport("oci://registry.example.test/x", "the registry", plain_http=True)


def test_a_configuration_registers_the_secrets_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(demo_config(tmp_path)))
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_configNamedToken0123456789")
    monkeypatch.setenv("FLEET_GIT_SSH_KEY", PEM.replace("unitTest", "configTest"))
    load_config(path)
    assert redact("ghp_configNamedToken0123456789") == MASK
    assert redact(PEM.replace("unitTest", "configTest").splitlines()[2]) == MASK


def test_the_inventory_stores_no_secret(tmp_path: Path) -> None:
    redaction.register_secret("inv-secret-0d9f3b6a")
    inventory = Inventory(f"sqlite:///{tmp_path / 'inventory.db'}")
    now = utcnow()
    try:
        inventory.create(
            SandboxRecord(
                name="sandbox-r",
                kind=SandboxKind.platform,
                source_env="development",
                lifecycle_id="abc",
                status=SandboxStatus.creating,
                created_at=now,
                expires_at=now,
            )
        )
        inventory.stage_failed("sandbox-r", "abc", Stage.provision, "failed: inv-secret-0d9f3b6a")
        inventory.update("sandbox-r", last_error="boom inv-secret-0d9f3b6a")
        assert inventory.get("sandbox-r").last_error == f"boom {MASK}"
    finally:
        inventory.close()
    assert b"inv-secret-0d9f3b6a" not in (tmp_path / "inventory.db").read_bytes()


# -- private files (item 3) ---------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_inventory_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        open_engine(f"sqlite:///{tmp_path / 'new' / 'inventory.db'}", InventoryError).dispose()
        existing = tmp_path / "old.db"
        existing.write_bytes(b"")
        existing.chmod(0o644)
        open_engine(f"sqlite:///{existing}", InventoryError).dispose()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new" / "inventory.db") == 0o600
    assert _mode(tmp_path / "new") == 0o700
    assert _mode(existing) == 0o600


def test_existing_terraform_state_is_made_private(tmp_path: Path) -> None:
    workdir = tmp_path / "terraform"
    workspace = workdir / "terraform.tfstate.d" / "sandbox-a"
    workspace.mkdir(parents=True, mode=0o755)
    for path in (workspace / "terraform.tfstate", workspace / "terraform.tfstate.backup", workdir / "main.tf"):
        path.write_text("{}")
        path.chmod(0o644)
    workdir.chmod(0o755)
    private_state(workdir)
    assert _mode(workdir) == 0o700 and _mode(workspace) == 0o700 and _mode(workspace.parent) == 0o700
    assert _mode(workspace / "terraform.tfstate") == 0o600 and _mode(workspace / "terraform.tfstate.backup") == 0o600
    private_directory(tmp_path / "x" / "y")
    assert _mode(tmp_path / "x" / "y") == 0o700
    private_file(tmp_path / "missing")  # nothing to do


# -- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bot:ghp_secret@github.com/org/fleet.git", "https://***@github.com/org/fleet.git"),
        ("https://load:s3cret@shop.example/", "https://***@shop.example/"),
        ("ssh://git@github.com/org/fleet", "ssh://***@github.com/org/fleet"),
        # A password holding an "@" is hidden whole, up to the host.
        ("https://user:p@ss@host.example/x", "https://***@host.example/x"),
        # An "@" after the host (path, query) is no user info.
        ("https://host.example/a@b?c=d@e", "https://host.example/a@b?c=d@e"),
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x"),
        ("/srv/git/fleet.git", "/srv/git/fleet.git"),
        ("git@github.com:org/fleet.git", "git@github.com:org/fleet.git"),
        ("", ""),
    ],
)
def test_a_url_is_shown_without_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_no_url_stays_none() -> None:
    assert redact_url(None) is None
