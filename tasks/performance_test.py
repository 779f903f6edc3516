"""The performance-test stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.models import Stage, StageResult
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key


@task(name="performance-test", cache_key_fn=stage_cache_key(Stage.performance_test), **STAGE_TASK_OPTIONS)
def performance_test_task(request: StageRequest) -> StageResult:
    """Run the load scenario and compare it with the baseline.

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """
    return run_stage(Stage.performance_test, request)
