"""The teardown stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.models import Stage, StageResult
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key, stage_state


@task(name="teardown", task_run_name="teardown", cache_key_fn=stage_cache_key(Stage.teardown), **STAGE_TASK_OPTIONS)
def teardown_task(request: StageRequest) -> StageResult:
    """Ordered teardown (custom objects before controllers), then terraform destroy.

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """
    return stage_state(run_stage(Stage.teardown, request, force=request.force))
