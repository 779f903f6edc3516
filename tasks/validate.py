"""The validate stage as Prefect tasks: in the lifecycle, and on demand (``sandbox validate NAME``).

Both publish the report as a table artifact (``validation-<sandbox>``), whatever the verdict.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from sandbox.config import load_config
from sandbox.models import Stage, StageResult
from sandbox.stages.validate import validation_report
from sandbox.validation import ValidationFailedError, ValidationReport, ensure_validatable, stage_result
from tasks.artifacts import artifact_key, create_table_artifact
from tasks.common import (
    RETRY_DELAYS,
    STAGE_TASK_OPTIONS,
    StageRequest,
    retry_if_retryable,
    run_stage,
    stage_cache_key,
    stage_context,
    stage_state,
)


def publish_report(report: ValidationReport) -> None:
    """The report as a Prefect table artifact (one row per object or violation)."""
    create_table_artifact(
        key=artifact_key("validation", report.sandbox),
        table=report.rows(),
        description=f"**{report.summary()}**\n\nScanned: {', '.join(report.scanned) or 'nothing'}",
    )


@task(name="validate", task_run_name="validate", cache_key_fn=stage_cache_key(Stage.validate), **STAGE_TASK_OPTIONS)
def validate_task(request: StageRequest) -> StageResult:
    """Scan for removed APIs, check the fleet policy, then wait for every Kustomization and HelmRelease to be Ready.

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """
    try:
        result = run_stage(Stage.validate, request)
    except ValidationFailedError as exc:
        publish_report(exc.report)
        raise
    report = result.details.get("report")
    if report is not None and not result.reused:
        publish_report(ValidationReport.model_validate(report))
    return stage_state(result)


@task(
    name="revalidate",
    cache_policy=NO_CACHE,
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=[float(d) for d in RETRY_DELAYS],
    retry_condition_fn=retry_if_retryable,
)
def revalidate_task(request: StageRequest) -> ValidationReport:
    """Validate an existing sandbox again, at its branch's head, and record the outcome as its validate stage.

    A pass completes the lifecycle's validate stage (so ``resume`` and ``promote``
    see it); a failure marks it failed, so a sandbox that broke after an earlier pass
    cannot be promoted on that stale pass.

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The report, whatever the verdict (the flow decides the run's state).
    """
    logger = get_run_logger()
    config = load_config(request.config_path)
    ctx = stage_context(config, request.name, progress=logger.info)
    inventory = ctx.inventory
    try:
        ensure_validatable(ctx.record)
        with inventory.recording_stage(
            request.name, request.lifecycle_id, Stage.validate, keep_other_failures=True
        ) as recording:
            report = validation_report(ctx)
            publish_report(report)
            if report.passed:
                recording.complete(stage_result(report))
            else:
                recording.fail(report.failure_message())
        logger.info(report.summary())
        return report
    finally:
        inventory.close()
