"""The provision stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.models import Stage, StageResult
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key


@task(name="provision", cache_key_fn=stage_cache_key(Stage.provision), **STAGE_TASK_OPTIONS)
def provision_task(request: StageRequest) -> StageResult:
    """Create the sandbox cluster with terraform (plan shown, then apply).

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """
    return run_stage(Stage.provision, request)
