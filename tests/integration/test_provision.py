"""The provision task in a real Prefect flow run with real terraform and git.

* The plan is shown before it is applied: in the run's log and as a Markdown artifact.
* The cluster credential (the module's sensitive ``cluster_token`` output) reaches
  no log, no artifact, no persisted result and not the inventory.
* An invalid module fails the task at once with Terraform's message: no retries.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest

from sandbox.config import FleetConfig, load_config
from sandbox.drivers.git import GitCli
from sandbox.drivers.terraform import PythonTerraformDriver
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import SandboxKind, Stage
from sandbox.wiring import open_inventory, sandbox_state_dir
from tests.integration.sandbox_cli import demo_setup

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires_tool("terraform"),
]

INVALID_MODULE = Path(__file__).resolve().parents[1] / "fixtures" / "terraform" / "modules" / "invalid_reference"


def _flushed_logs(flow_run_id: UUID, until: str) -> list[Any]:
    """The flow run's logs, oldest first, once the line containing ``until`` arrived (bounded wait)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), sort=LogSort.TIMESTAMP_ASC
        )
    assert any(until in log.message for log in logs), [log.message for log in logs]
    return logs


@pytest.fixture(scope="module")
def config(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetConfig]:
    config_path = demo_setup(tmp_path_factory.mktemp("provision"))
    yield load_config(config_path)


def _lifecycle(config: FleetConfig, name: str, **fields: Any) -> Any:
    from flows.lifecycle import sandbox_lifecycle

    request = LifecycleRequest(
        config_path=str(config.base_dir / "fleet.yaml"), name=name, stop_after=Stage.provision, **fields
    )
    return sandbox_lifecycle(request=request, resume=False, return_state=True)


def test_the_plan_is_shown_before_apply_and_the_credential_is_kept_out(config: FleetConfig) -> None:
    from prefect.artifacts import Artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.objects import Artifact as ArtifactResponse

    state = _lifecycle(config, "sandbox-plan", ticket="OPS-31", summary="plan shown")
    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id
    workdir = sandbox_state_dir(config, "sandbox-plan") / "terraform"
    token = PythonTerraformDriver(timeout=60).outputs(workdir)["cluster_token"].value
    assert isinstance(token, str) and len(token) > 20

    logs = _flushed_logs(flow_run_id, "cluster sandbox-plan is up")
    messages = [log.message for log in logs]
    plan_at = next(i for i, m in enumerate(messages) if "terraform plan for sandbox-plan: Plan: 2 to add" in m)
    up_at = next(i for i, m in enumerate(messages) if "cluster sandbox-plan is up" in m)
    assert plan_at < up_at
    assert "  create: terraform_data.cluster" in messages[plan_at + 1 : up_at]

    artifact = cast(ArtifactResponse | None, Artifact.get("provision-plan-sandbox-plan"))  # sync call: not a coroutine
    assert artifact is not None and artifact.flow_run_id == flow_run_id
    markdown = str(artifact.data)
    assert "**Plan: 2 to add, 0 to change, 0 to destroy.**" in markdown
    assert "| create | `terraform_data.cluster` |" in markdown
    assert "| create | `terraform_data.network` |" in markdown
    assert artifact.created is not None and artifact.created <= logs[up_at].timestamp

    # The credential is nowhere: logs, artifacts, the inventory, persisted results.
    assert not [m for m in messages if token in m]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert artifacts and not [a.key for a in artifacts if token in str(a.data)]
    inventory = open_inventory(config)
    try:
        record = inventory.get("sandbox-plan")
        result = inventory.stage_result("sandbox-plan", record.lifecycle_id, Stage.provision)
    finally:
        inventory.close()
    assert result is not None and result["details"]["outputs"]["cluster_endpoint"].startswith("simulated://")
    assert "cluster_token" not in result["details"]["outputs"]
    assert token.encode() not in (config.state_dir / "inventory.db").read_bytes()
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

    results_dir = Path(str(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value())).expanduser()
    persisted = [p for p in results_dir.rglob("*") if p.is_file()]
    assert persisted and not [p for p in persisted if token.encode() in p.read_bytes()]

    # Planning again (the state now holds the credential): terraform prints the
    # resource's id in the plan; the driver redacts it.
    driver = PythonTerraformDriver(timeout=60)
    variables = {
        "cluster_name": "sandbox-plan",
        "kubernetes_version": "1.32",
        "node_count": 1,
        "node_size": "small",
        "simulation_dir": str(sandbox_state_dir(config, "sandbox-plan") / "simulated-cluster"),
    }
    replan = driver.plan(workdir, variables)
    assert replan.change == ["terraform_data.cluster"]
    assert "***" in replan.text and token not in replan.text and token not in replan.markdown("t")
    Path(str(replan.plan_file)).unlink()


def test_an_invalid_module_fails_at_once_without_retries(config: FleetConfig, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # The fleet repository gains an environment whose cluster module is invalid.
    git = GitCli()
    checkout = tmp_path / "checkout"
    git.clone(config.remote_url, checkout)
    shutil.copytree(INVALID_MODULE, checkout / "infra" / "broken")
    git.commit_all(checkout, "an invalid cluster module")
    git.push(checkout, "main")
    config_path = config.base_dir / "fleet-broken.yaml"
    text = (config.base_dir / "fleet.yaml").read_text(encoding="utf-8")
    config_path.write_text(text.replace("module: infra/cluster", "module: infra/broken"), encoding="utf-8")
    broken = load_config(config_path)
    assert broken.environments["production"].terraform.module == "infra/broken"

    from flows.lifecycle import sandbox_lifecycle

    request = LifecycleRequest(
        config_path=str(config_path),
        name="sandbox-broken",
        source_env="production",
        kind=SandboxKind.performance,
        stop_after=Stage.provision,
    )
    state = sandbox_lifecycle(request=request, resume=False, return_state=True)

    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    [provision] = [t for t in task_runs if t.name.startswith("provision")]
    assert provision.state is not None and provision.state.is_failed()
    assert provision.run_count == 1  # a permanent error is never retried
    inventory = open_inventory(broken)
    try:
        record = inventory.get("sandbox-broken")
    finally:
        inventory.close()
    assert record.failed_stage == "provision"
    assert record.last_error is not None
    assert "Reference to undeclared input variable" in record.last_error
    assert "cluster_nmae" in record.last_error


def test_retryable_errors_are_retried_and_permanent_ones_are_not(prefect_server: str) -> None:
    from prefect import flow, task

    from sandbox.drivers.terraform_errors import TerraformError, TerraformTransientError
    from sandbox.errors import StateLockedError
    from tasks.common import RETRY_DELAYS, STAGE_TASK_OPTIONS

    attempts: dict[str, int] = {}
    failures: dict[str, list[Exception]] = {
        "locked": [StateLockedError("terraform apply in /w: the state is locked")],
        "throttled": [TerraformTransientError("terraform apply in /w: temporary failure: Throttling: Rate exceeded")],
        "invalid": [TerraformError("terraform plan in /w failed: Reference to undeclared input variable")] * 5,
    }
    # The stage tasks' retry policy, without waiting between attempts.
    options = {**STAGE_TASK_OPTIONS, "retry_delay_seconds": 0, "persist_result": False}

    @task(**options)
    def stage(kind: str) -> str:
        attempts[kind] = attempts.get(kind, 0) + 1
        if failures[kind]:
            raise failures[kind].pop(0)
        return "done"

    @flow
    def stages() -> dict[str, Any]:
        return {kind: stage(kind, return_state=True) for kind in failures}

    states = stages()
    assert states["locked"].is_completed() and states["throttled"].is_completed()
    assert (attempts["locked"], attempts["throttled"]) == (2, 2)
    assert states["invalid"].is_failed() and attempts["invalid"] == 1
    assert STAGE_TASK_OPTIONS["retries"] == len(RETRY_DELAYS)
    assert all(a < b for a, b in zip(RETRY_DELAYS, RETRY_DELAYS[1:], strict=False))  # backing off
