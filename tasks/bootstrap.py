"""The bootstrap stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.models import Stage, StageResult
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key, stage_state


@task(name="bootstrap", task_run_name="bootstrap", cache_key_fn=stage_cache_key(Stage.bootstrap), **STAGE_TASK_OPTIONS)
def bootstrap_task(request: StageRequest) -> StageResult:
    """Write and push the sandbox's gotk-sync.yaml and install Flux and the sync on the cluster.

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """
    return stage_state(run_stage(Stage.bootstrap, request))
