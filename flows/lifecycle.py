"""The sandbox lifecycle flow: provision → clone → bootstrap → validate →
performance test → teardown → promote, each a retried, checkpointed task.

Before anything exists the request is checked (invalid input fails the flow run
with its cause), the sandbox's lock is taken (one run per sandbox, see
:mod:`tasks.locking`) and, for a new sandbox, the surroundings are checked
(:mod:`sandbox.preflight`). A lasting failure of provision or bootstrap is rolled
back unless the request keeps it (:mod:`sandbox.rollback`); a crash runs no
rollback, the nightly cleanup is the backstop.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.states import State
from pydantic import BaseModel, Field

from sandbox.errors import error_message
from sandbox.hardening import harden_process
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import STAGE_ORDER, SandboxRecord, Stage, StageResult
from sandbox.rollback import should_roll_back
from sandbox.run_summary import StageLine
from tasks.bootstrap import bootstrap_task
from tasks.clone import clone_task
from tasks.common import StageRequest
from tasks.locking import fleet_of, sandbox_lock
from tasks.performance_test_stage import performance_test_task
from tasks.preflight import check_request_task, preflight_task
from tasks.promote import promote_task
from tasks.provision import provision_task
from tasks.register import register_task
from tasks.rollback import keep_failed_task, rollback_task
from tasks.summary import publish_lifecycle_summary
from tasks.teardown import teardown_task
from tasks.validate import validate_task

STAGE_TASKS: dict[Stage, Any] = {
    Stage.provision: provision_task,
    Stage.clone: clone_task,
    Stage.bootstrap: bootstrap_task,
    Stage.validate: validate_task,
    Stage.performance_test: performance_test_task,
    Stage.teardown: teardown_task,
    Stage.promote: promote_task,
}


class StageOutcome(BaseModel):
    """How one stage went in this run."""

    stage: Stage
    outcome: str = Field(description="executed, cached (Prefect checkpoint) or already completed (inventory)")
    summary: str
    details: dict[str, Any] = Field(
        default_factory=dict, exclude=True, description="The stage result's details (for the run's summary artifact)"
    )


class LifecycleReport(BaseModel):
    """What a lifecycle run did."""

    name: str
    lifecycle_id: str
    stages: list[StageOutcome]


def outcome_of(state: State[Any], result: StageResult) -> str:
    """Name how a stage's result came about."""
    if state.name == "Cached":
        return "cached"
    return "already completed" if result.reused else "executed"


def _cause(error: BaseException | None) -> str:
    return " ".join(error_message(error).split()) if error is not None else "unknown error"


def summary_lines(stages: list[Stage], outcomes: list[StageOutcome]) -> list[StageLine]:
    """Each planned stage with how it went (``not run`` for those the run did not reach), in order."""
    done = {outcome.stage: outcome for outcome in outcomes}
    return [
        StageLine(stage=stage, outcome=done[stage].outcome, summary=done[stage].summary)
        if stage in done
        else StageLine(stage=stage, outcome="not run")
        for stage in stages
    ]


def _publish_summary(
    config_path: str,
    name: str,
    lifecycle_id: str,
    stages: list[Stage],
    outcomes: list[StageOutcome],
    failure: BaseException | None,
) -> None:
    """The run's summary artifact (``lifecycle-<sandbox>``): each planned stage, its result, the failure if any."""
    publish_lifecycle_summary(
        config_path,
        name,
        lifecycle_id,
        lines=summary_lines(stages, outcomes),
        results={o.stage: o.details for o in outcomes if o.outcome != "failed"},
        failed=None if failure is None else _cause(failure),
        logger=get_run_logger(),
    )


#: What a lifecycle does when provision or bootstrap fails for good: undo the sandbox, or keep it marked failed.
FailurePolicy = Literal["rollback", "keep"]


def run_stages(
    request: StageRequest,
    stages: list[Stage],
    *,
    on_failure: FailurePolicy | None = None,
    outcomes: list[StageOutcome] | None = None,
) -> list[StageOutcome]:
    """Run ``stages`` in order under the sandbox's lock; the first failure fails the flow run with its cause.

    Args:
        request: Which sandbox and lifecycle.
        stages: The stages to run, in order.
        on_failure: For a lasting failure of provision or bootstrap (see :mod:`sandbox.rollback`):
            ``rollback`` undoes the sandbox, ``keep`` marks it failed; ``None`` leaves it as it is.
        outcomes: Where each stage's outcome is appended as it finishes (a failed stage's too,
            as ``failed`` with its cause) and what is returned; a new list when ``None``.
    """
    logger = get_run_logger()
    outcomes = [] if outcomes is None else outcomes
    previous: State[Any] | None = None
    with sandbox_lock(request.name, fleet_of(request.config_path), log=logger.info) as lock:
        for stage in stages:
            lock.check()
            # Each stage waits for the one before: the run's graph draws the seven as a chain.
            state = STAGE_TASKS[stage](request, return_state=True, wait_for=[previous] if previous else None)
            previous = state
            if not state.is_completed():
                error = state.result(raise_on_failure=False)
                failure = error if isinstance(error, BaseException) else None
                outcomes.append(StageOutcome(stage=stage, outcome="failed", summary=_cause(failure)))
                if on_failure is not None and should_roll_back(stage, failure):
                    if on_failure == "rollback":
                        logger.warning(rollback_task(request, stage, _cause(failure)).summary())
                    else:
                        logger.warning(keep_failed_task(request, stage, _cause(failure)))
            result: StageResult = state.result()  # raises the stage's error on failure
            outcome = StageOutcome(
                stage=stage, outcome=outcome_of(state, result), summary=result.summary, details=result.details
            )
            logger.info(f"stage {stage.value}: {outcome.outcome}: {result.summary}")
            outcomes.append(outcome)
    return outcomes


def run_stages_with_summary(
    request: StageRequest, stages: list[Stage], *, on_failure: FailurePolicy | None = None
) -> list[StageOutcome]:
    """:func:`run_stages`, then the run's summary artifact (``lifecycle-<sandbox>``), whatever happened."""
    outcomes: list[StageOutcome] = []
    failure: BaseException | None = None
    try:
        return run_stages(request, stages, on_failure=on_failure, outcomes=outcomes)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _publish_summary(request.config_path, request.name, request.lifecycle_id, stages, outcomes, failure)


@flow(name="sandbox-lifecycle", flow_run_name="{request.name}", log_prints=True)
def sandbox_lifecycle(request: LifecycleRequest, resume: bool = False) -> LifecycleReport:
    """Run a sandbox's whole lifecycle, or resume it from its last completed stage.

    Invalid input fails the run before anything exists; a sandbox another run holds
    fails it at once naming the holder; a lasting failure of provision or bootstrap
    is rolled back unless ``request.keep_on_failure``.

    Args:
        request: What sandbox to make, from which environment, with which change.
        resume: Continue an existing sandbox of this name instead of refusing it.

    Returns:
        Each stage with its outcome (executed, cached or already completed).
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    logger = get_run_logger()
    validated = check_request_task(request)  # before the lock: its name comes from the request
    stages = list(STAGE_ORDER)
    if request.stop_after is not None:
        stages = stages[: stages.index(request.stop_after) + 1]
    outcomes: list[StageOutcome] = []
    record: SandboxRecord | None = None
    failure: BaseException | None = None
    try:
        with sandbox_lock(request.name, fleet_of(request.config_path), log=logger.info):
            preflight_task(request)
            record = register_task(validated, resume=resume)
            stage_request = StageRequest(
                config_path=request.config_path,
                name=record.name,
                lifecycle_id=record.lifecycle_id,
                change=request.change,
            )
            run_stages(
                stage_request, stages, on_failure="keep" if request.keep_on_failure else "rollback", outcomes=outcomes
            )
    except BaseException as exc:
        failure = exc
        raise
    finally:
        if record is not None:
            _publish_summary(request.config_path, record.name, record.lifecycle_id, stages, outcomes, failure)
    if record is None:  # unreachable: the lock's block either registered the sandbox or raised
        raise RuntimeError("the lifecycle registered no sandbox")
    return LifecycleReport(name=record.name, lifecycle_id=record.lifecycle_id, stages=outcomes)
