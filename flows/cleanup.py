"""The nightly cleanup of expired and orphaned sandboxes (deployed with a cron schedule in prefect.yaml)."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run

from sandbox.cleanup import CleanupAction, CleanupFailedError, CleanupOutcome, CleanupReport
from sandbox.hardening import harden_process
from tasks.cleanup import plan_cleanup_task, publish_cleanup_report_task, resolve_cleanup_action_task


def _outcome(future: PrefectFuture[CleanupOutcome], action: CleanupAction) -> CleanupOutcome:
    future.wait()  # takes the final state the run returned (not the API's view, which may lag)
    state = future.state
    if state.is_completed():
        return future.result()
    error = future.result(raise_on_failure=False)
    detail = str(error) if isinstance(error, BaseException) else str(state.message or state.name)
    return CleanupOutcome(action=action, status="failed", detail=" ".join(detail.split()))


def run_bounded(config_path: str, run_id: str, actions: list[CleanupAction], limit: int) -> list[CleanupOutcome]:
    """Resolve ``actions`` as tasks with at most ``limit`` running at once; one failing stops no other.

    Returns:
        One outcome per action, in the order of ``actions``.
    """
    queue = list(enumerate(actions))
    running: dict[object, tuple[int, PrefectFuture[CleanupOutcome]]] = {}
    outcomes: dict[int, CleanupOutcome] = {}
    while queue or running:
        while queue and len(running) < limit:
            index, action = queue.pop(0)
            future = resolve_cleanup_action_task.submit(config_path, run_id, action)
            running[future.task_run_id] = (index, future)
        finished = next(as_completed([future for _, future in running.values()]))
        index, _ = running.pop(finished.task_run_id)
        outcomes[index] = _outcome(finished, actions[index])
    return [outcomes[i] for i in range(len(actions))]


@flow(name="cleanup-expired-sandboxes", log_prints=True)
def cleanup_expired_sandboxes(
    config_path: str = "fleet.yaml", dry_run: bool = False, run_id: str | None = None
) -> CleanupReport:
    """Tear down expired sandboxes and resolve orphans; publish a summary table.

    Finds expired records (not ``--keep``), orphaned terraform states, records
    whose infrastructure is gone, and sandbox branches or directories on the
    fleet remote without a live record; resolves each with at most
    ``cleanup.concurrency`` at once. The run fails (for alerting automations)
    when any action failed or part of the scan could not be made; every other
    action still runs.

    Args:
        config_path: Path of fleet.yaml on the worker.
        dry_run: Only list the plan; change nothing.
        run_id: Identifies the run in the inventory (default: the flow run's id).

    Returns:
        What was done (or, dry, would be).
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    logger = get_run_logger()
    run_id = run_id or str(flow_run.id)
    plan = plan_cleanup_task(config_path, run_id, dry_run)
    if dry_run:
        report = CleanupReport.of(plan)
    else:
        report = CleanupReport.of(plan, run_bounded(config_path, run_id, plan.actions, plan.concurrency))
    publish_cleanup_report_task(report)
    logger.info(report.markdown())
    if not dry_run and not report.ok():
        raise CleanupFailedError(report.failure_line())
    return report
