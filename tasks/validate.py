"""The validate stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.models import Stage, StageResult
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key


@task(name="validate", cache_key_fn=stage_cache_key(Stage.validate), **STAGE_TASK_OPTIONS)
def validate_task(request: StageRequest) -> StageResult:
    """Scan for removed APIs, then wait for every Kustomization and HelmRelease to be Ready.

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """
    return run_stage(Stage.validate, request)
