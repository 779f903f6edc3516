"""The provision stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.drivers.terraform import PlanSummary
from sandbox.models import Stage, StageResult
from tasks.artifacts import artifact_key, publish_plan
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key, stage_state


@task(name="provision", task_run_name="provision", cache_key_fn=stage_cache_key(Stage.provision), **STAGE_TASK_OPTIONS)
def provision_task(request: StageRequest) -> StageResult:
    """Create the sandbox cluster with terraform (plan shown in the log and as an artifact, then applied).

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """

    def show(plan: PlanSummary) -> None:
        publish_plan(artifact_key("provision-plan", request.name), f"terraform plan for sandbox {request.name}", plan)

    return stage_state(run_stage(Stage.provision, request, on_plan=show))
