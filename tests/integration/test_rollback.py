"""Roll back: a lasting failure of provision or bootstrap undoes the sandbox, unless --keep-on-failure.

Real terraform, git and simulated cluster; the failures are real ones of the
outside systems: a cluster module whose apply fails after the network exists
(the provider refuses the node group), and Flux components holding an object of
a kind the cluster does not know (its CustomResourceDefinition is missing).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from sandbox.config import load_config
from sandbox.demo import prepare_demo
from sandbox.models import STAGE_ORDER
from tests.conftest import FIXTURES
from tests.integration.reliability_support import edit_config, records, remote_branches
from tests.integration.sandbox_cli import error_line, sandbox_cli

pytestmark = pytest.mark.integration

BAD_COMPONENT = """---
apiVersion: widgets.example.com/v1
kind: Widget
metadata:
  name: needs-a-crd
  namespace: flux-system
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def push_to_main(workdir: Path, change: Callable[[Path], None], message: str) -> None:
    """Commit ``change`` on main of the fleet remote, as a colleague would."""
    checkout = workdir / f"colleague-{len(list(workdir.glob('colleague-*')))}"
    git(workdir, "clone", "--quiet", str(workdir / "remote.git"), checkout.name)
    change(checkout)
    git(checkout, "add", "--all")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", message)
    git(checkout, "push", "--quiet", "origin", "main")


def flow_run_message(stdout: str) -> str:
    """The state message of the flow run the CLI reported."""
    from prefect.client.orchestration import get_client

    flow_run_id = stdout.split("flow run 'sandbox-lifecycle' (", 1)[1].split(")", 1)[0]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
    assert run.state is not None and run.state.is_failed(), run.state
    return run.state.message or ""


def stage_rows(config_path: Path, name: str) -> list[tuple[str, str, str, int]]:
    database = load_config(config_path).state_dir / "inventory.db"
    with sqlite3.connect(database) as connection:
        return list(
            connection.execute(
                "SELECT lifecycle_id, stage, status, executions FROM stage_runs WHERE sandbox = ? ORDER BY id", (name,)
            )
        )


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    config_path = prepare_demo(tmp_path / "fleet", development=False)
    edit_config(config_path, drivers={"cluster": {"simulation": {"readiness_delay_seconds": 0.05}}})
    return config_path


@pytest.fixture
def failing_module(fleet: Path) -> Path:
    """Development's cluster module replaced by one whose apply fails half-way."""

    def add_module(checkout: Path) -> None:
        shutil.copytree(FIXTURES / "reliability" / "modules" / "apply-fails", checkout / "infra" / "apply-fails")

    push_to_main(fleet.parent, add_module, "a cluster module the provider refuses")
    edit_config(fleet, environments={"development": {"terraform": {"module": "infra/apply-fails"}}})
    return fleet


def create(fleet: Path, name: str, api_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return sandbox_cli(
        "create", name, "--ticket", "OPS-9", "--summary", name, "--config", str(fleet), *extra, api_url=api_url
    )


def test_failed_provision_is_rolled_back_leaving_nothing(failing_module: Path, prefect_server: str) -> None:
    result = create(failing_module, "sandbox-rb", prefect_server)
    assert result.returncode == 1, result.stderr[-2000:]
    cause = error_line(result.stderr)
    assert cause.startswith("sandbox: error: terraform apply") and "InvalidParameterValue" in cause
    assert "InvalidParameterValue" in flow_run_message(result.stdout)
    assert "rolled back sandbox-rb after provision failed" in result.stderr
    # The network terraform made before the failure is destroyed, with everything local.
    state = load_config(failing_module).state_dir / "sandboxes" / "sandbox-rb"
    assert not state.exists(), sorted(str(p) for p in state.rglob("*"))
    assert remote_branches(failing_module.parent / "remote.git") == {"main"}
    [record] = records(failing_module)
    assert (record.status.value, record.failed_stage) == ("rolled-back", "provision")
    assert "InvalidParameterValue" in (record.last_error or "") and "rolled back" in (record.last_error or "")
    # A retry of the same request is told how to go on.
    again = create(failing_module, "sandbox-rb", prefect_server)
    assert again.returncode == 1
    assert "already exists (status rolled-back); use 'sandbox resume sandbox-rb'" in again.stderr


def test_keep_on_failure_keeps_the_half_made_sandbox(failing_module: Path, prefect_server: str) -> None:
    result = create(failing_module, "sandbox-keep", prefect_server, "--keep-on-failure")
    assert result.returncode == 1 and "InvalidParameterValue" in error_line(result.stderr)
    assert "rolled back" not in result.stderr
    [record] = records(failing_module)
    assert (record.status.value, record.failed_stage) == ("failed", "provision")
    state = load_config(failing_module).state_dir / "sandboxes" / "sandbox-keep"
    assert (state / "simulated-cluster" / "network").is_file()  # kept for debugging
    # ... until it is destroyed on purpose.
    destroyed = sandbox_cli("destroy", "sandbox-keep", "--config", str(failing_module), api_url=prefect_server)
    assert destroyed.returncode == 0, destroyed.stderr[-2000:]
    assert not (state / "simulated-cluster").exists()


def test_failed_bootstrap_is_rolled_back_and_resume_starts_over(fleet: Path, prefect_server: str) -> None:
    def add_bad_component(checkout: Path) -> None:
        components = checkout / "clusters" / "development" / "flux-system" / "gotk-components.yaml"
        components.write_text(components.read_text() + BAD_COMPONENT)

    push_to_main(fleet.parent, add_bad_component, "a component whose CRD is missing")
    result = create(fleet, "sandbox-bs", prefect_server)
    assert result.returncode == 1, result.stderr[-2000:]
    cause = error_line(result.stderr)
    assert "Widget" in cause and "is its CustomResourceDefinition installed?" in cause
    assert "Widget" in flow_run_message(result.stdout)
    assert "rolled back sandbox-bs after bootstrap failed" in result.stderr
    [record] = records(fleet)
    assert (record.status.value, record.failed_stage) == ("rolled-back", "bootstrap")
    assert "rolled back" in (record.last_error or "")
    # Everything it had is gone: cluster, terraform state, branch, local state.
    assert not (load_config(fleet).state_dir / "sandboxes" / "sandbox-bs").exists()
    assert remote_branches(fleet.parent / "remote.git") == {"main"}
    # The finished stages keep their checkpoints (the old lifecycle); the record starts a new one.
    rows = stage_rows(fleet, "sandbox-bs")
    old = rows[0][0]
    assert [(stage, status, runs) for lid, stage, status, runs in rows if lid == old] == [
        ("provision", "completed", 1),
        ("clone", "completed", 1),
        ("bootstrap", "failed", 0),
    ]
    assert record.lifecycle_id != old and all(s.executions == 0 for s in record.stages)
    # Prefect's "Retry" of the rolled-back flow run would act on the old lifecycle: refused.
    from prefect import flow
    from prefect.states import State

    from sandbox.errors import ConflictError
    from tasks.bootstrap import bootstrap_task
    from tasks.common import StageRequest

    @flow(name="retry-of-a-rolled-back-run")
    def retry_old_lifecycle() -> Any:
        old_request = StageRequest(config_path=str(fleet), name="sandbox-bs", lifecycle_id=old)
        return bootstrap_task(old_request)

    state = cast(State[Any], retry_old_lifecycle(return_state=True))  # a sync flow returns its state
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ConflictError) and f"lifecycle {old} of sandbox-bs is over" in str(error)

    # With the component fixed on main, resuming runs the whole lifecycle again, once.
    def fix(checkout: Path) -> None:
        components = checkout / "clusters" / "development" / "flux-system" / "gotk-components.yaml"
        components.write_text(components.read_text().replace(BAD_COMPONENT, ""))

    push_to_main(fleet.parent, fix, "drop the component without a CRD")
    resumed = sandbox_cli("resume", "sandbox-bs", "--config", str(fleet), api_url=prefect_server)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    [record] = records(fleet)
    assert record.status.value == "destroyed"
    assert [(s.name, s.status.value, s.executions) for s in record.stages] == [
        (stage, "completed", 1) for stage in STAGE_ORDER
    ]
