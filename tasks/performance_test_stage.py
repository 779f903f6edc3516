"""The performance-test stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.models import Stage, StageResult
from sandbox.perf.scenario import LoadOverrides
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key


@task(name="performance-test", cache_key_fn=stage_cache_key(Stage.performance_test), **STAGE_TASK_OPTIONS)
def performance_test_task(
    request: StageRequest, scenario: str | None = None, overrides: LoadOverrides | None = None
) -> StageResult:
    """Run a load scenario against the sandbox and compare it with the scenario's baseline.

    Args:
        request: Which sandbox and lifecycle.
        scenario: Scenario name (``performance.default_scenario`` when ``None``).
        overrides: Per-run changes to the scenario's load (users, duration, ...).

    Returns:
        The stage's result (a persisted checkpoint): metrics, baseline, comparison, verdict.
    """
    return run_stage(Stage.performance_test, request, scenario=scenario, overrides=overrides)
