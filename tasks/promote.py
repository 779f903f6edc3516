"""The promote stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.models import Stage, StageResult
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key, stage_state


@task(name="promote", task_run_name="promote", cache_key_fn=stage_cache_key(Stage.promote), **STAGE_TASK_OPTIONS)
def promote_task(request: StageRequest) -> StageResult:
    """Copy the sandbox back to development (no gotk-sync.yaml), push, open a pull request.

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """
    return stage_state(run_stage(Stage.promote, request))
