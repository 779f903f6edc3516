"""The performance-test stage as a Prefect task."""

from __future__ import annotations

from prefect import task

from sandbox.config import load_config
from sandbox.models import Stage, StageResult
from sandbox.perf.scenario import LoadOverrides
from tasks.artifacts import artifact_key
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, run_stage, stage_cache_key, stage_state
from tasks.performance import comparison_chart, publish_comparison, result_source_env


@task(
    name="performance-test",
    task_run_name="performance-test",
    cache_key_fn=stage_cache_key(Stage.performance_test),
    **STAGE_TASK_OPTIONS,
)
def performance_test_task(
    request: StageRequest, scenario: str | None = None, overrides: LoadOverrides | None = None, publish: bool = True
) -> StageResult:
    """Run a load scenario against the sandbox and compare it with the scenario's baseline.

    With ``publish``, the comparison is published as the performance deployment
    publishes its own: a table artifact ``perf-<sandbox>`` and a Markdown summary
    ``perf-summary-<sandbox>`` with the chart inline (keys stable per sandbox).

    Args:
        request: Which sandbox and lifecycle.
        scenario: Scenario name (``performance.default_scenario`` when ``None``).
        overrides: Per-run changes to the scenario's load (users, duration, ...).
        publish: Publish the artifacts (the performance deployment publishes its own, per environment).

    Returns:
        The stage's result (a persisted checkpoint): metrics, baseline, comparison, verdict.
    """
    result = run_stage(Stage.performance_test, request, scenario=scenario, overrides=overrides)
    if publish and not result.reused:
        config = load_config(request.config_path)
        source_env = result_source_env(config, request.name, result.details)
        publish_comparison(
            config,
            key=artifact_key("perf", request.name),
            summary_key=artifact_key("perf-summary", request.name),
            run_id=request.lifecycle_id,
            sandbox=request.name,
            source_env=source_env,
            details=result.details,
            chart=comparison_chart(config, request.lifecycle_id, source_env, result.details),
        )
    return stage_state(result)
