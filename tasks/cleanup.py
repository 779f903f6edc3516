"""The nightly cleanup's Prefect tasks: plan, resolve one action, publish the summary table.

Expired sandboxes and adopted orphaned states are torn down by the normal
teardown stage (:data:`tasks.teardown.teardown_task`, a nested task run with
its checkpoints, retries and inventory bookkeeping); the other actions call the
core in :mod:`sandbox.cleanup`. Every outcome is recorded in the inventory's
``cleanup_actions`` table before the task returns or fails.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task

from sandbox.cleanup import (
    TEARDOWN_ACTIONS,
    CleanupAction,
    CleanupActionKind,
    CleanupOutcome,
    CleanupPlan,
    CleanupReport,
    OutcomeStatus,
    adopt_orphan_state,
    delete_orphan_branch,
    outcome_entry,
    plan_cleanup,
    propose_directory_removal,
    reconcile_record,
    still_due,
    stop_orphan_processes,
)
from sandbox.config import FleetConfig, load_config
from sandbox.errors import error_message
from sandbox.inventory import utcnow
from sandbox.models import StageResult
from sandbox.wiring import Drivers, build_drivers, open_inventory
from tasks.artifacts import create_table_artifact
from tasks.common import StageRequest, resolve_secret, retry_if_retryable
from tasks.teardown import teardown_task

#: Artifact keys: the summary table of real runs, and of dry runs (kept apart so
#: the history of what cleanup destroyed is not mixed with what it would have).
ARTIFACT_KEY = "sandbox-cleanup"
DRY_RUN_ARTIFACT_KEY = "sandbox-cleanup-dry-run"


def cleanup_drivers(config: FleetConfig) -> Drivers:
    """The drivers cleanup needs, with the git host's token resolved (Secret block or environment)."""
    hosting = config.drivers.git_hosting
    github_token = resolve_secret(hosting.token_secret_block, hosting.token_env) if hosting.type == "github" else None
    return build_drivers(config, github_token=github_token)


def _now() -> datetime:
    # To the microsecond: outcomes' start and end show how actions overlapped.
    return datetime.now(UTC)


@task(name="plan-cleanup", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=retry_if_retryable)
def plan_cleanup_task(config_path: str, run_id: str, dry_run: bool = False) -> CleanupPlan:
    """Find expired sandboxes and orphans (reads only).

    Args:
        config_path: Path of fleet.yaml.
        run_id: Identifies the cleanup run in the inventory.
        dry_run: Whether the plan is only shown.
    """
    logger = get_run_logger()
    config = load_config(config_path)
    inventory = open_inventory(config)
    try:
        plan = plan_cleanup(
            config, inventory, cleanup_drivers(config), run_id=run_id, dry_run=dry_run, progress=logger.info
        )
    finally:
        inventory.close()
    for action in plan.actions:
        logger.info(f"plan: {action.action.value} {action.target} ({action.kind.value}: {action.reason})")
    for warning in plan.warnings:
        logger.warning(f"scan incomplete: {warning}")
    return plan


def _resolve(
    config: FleetConfig, drivers: Drivers, config_path: str, run_id: str, action: CleanupAction
) -> tuple[OutcomeStatus, str]:
    inventory = open_inventory(config)
    try:
        if action.action is CleanupActionKind.reconcile_record:
            return reconcile_record(config, inventory, drivers, action, run_id=run_id)
        if action.action is CleanupActionKind.delete_branch:
            return delete_orphan_branch(config, drivers, action)
        if action.action is CleanupActionKind.propose_removal:
            return propose_directory_removal(config, drivers, action)
        if action.action is CleanupActionKind.stop_processes:
            return stop_orphan_processes(config, action)
        if action.action not in TEARDOWN_ACTIONS:
            raise ValueError(f"unknown cleanup action {action.action!r}")
        now = utcnow()
        if action.action is CleanupActionKind.adopt_and_teardown:
            record = adopt_orphan_state(config, inventory, drivers, action, run_id=run_id, now=now)
        else:
            found, why_not = still_due(inventory, action, now)
            if found is None:
                return "skipped", why_not
            record = found
    finally:
        inventory.close()
    # The normal teardown stage: ordered cluster teardown, then terraform destroy.
    # Called inside this task, the stage task hands back its final state (Completed, holding the
    # result, with the summary as its message; see tasks.common.stage_state), not the result:
    # ``result()`` unwraps it, and raises what a failed teardown raised.
    state = teardown_task(
        StageRequest(config_path=config_path, name=record.name, lifecycle_id=record.lifecycle_id), return_state=True
    )
    result: StageResult = state.result()
    return "done", result.summary


def _record(config: FleetConfig, run_id: str, outcome: CleanupOutcome) -> None:
    inventory = open_inventory(config)
    try:
        inventory.record_cleanup_action(outcome_entry(run_id, outcome))
    finally:
        inventory.close()


@task(name="cleanup-action", task_run_name="{action.action}-{action.target}")
def resolve_cleanup_action_task(config_path: str, run_id: str, action: CleanupAction) -> CleanupOutcome:
    """Resolve one planned action and record its outcome; a failure fails this task only.

    Args:
        config_path: Path of fleet.yaml.
        run_id: The cleanup run.
        action: What to do.

    Returns:
        The outcome (done or skipped); a failure is recorded, then raised.
    """
    logger = get_run_logger()
    config = load_config(config_path)
    started = _now()
    try:
        status, detail = _resolve(config, cleanup_drivers(config), config_path, run_id, action)
    except Exception as exc:
        failed = CleanupOutcome(
            action=action, status="failed", detail=error_message(exc), started_at=started, finished_at=_now()
        )
        _record(config, run_id, failed)
        raise
    outcome = CleanupOutcome(action=action, status=status, detail=detail, started_at=started, finished_at=_now())
    _record(config, run_id, outcome)
    logger.info(f"{action.action.value} {action.target}: {status}: {detail}")
    return outcome


@task(name="publish-cleanup-report")
def publish_cleanup_report_task(report: CleanupReport) -> str:
    """Publish the summary table artifact; its key (``sandbox-cleanup`` or ``sandbox-cleanup-dry-run``)."""
    key = DRY_RUN_ARTIFACT_KEY if report.dry_run else ARTIFACT_KEY
    create_table_artifact(key=key, table=report.rows(), description=report.markdown())
    return key
