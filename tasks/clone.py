"""The clone stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.models import Stage, StageResult
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key, stage_state


@task(name="clone", task_run_name="clone", cache_key_fn=stage_cache_key(Stage.clone), **STAGE_TASK_OPTIONS)
def clone_task(request: StageRequest) -> StageResult:
    """Branch from main and copy the source environment's cluster directory (no gotk-sync.yaml).

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """
    return stage_state(run_stage(Stage.clone, request, change=request.change))
