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
from sandbox.models import STAGE_ORDER, Stage, StageResult
from sandbox.rollback import should_roll_back
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


#: What a lifecycle does when provision or bootstrap fails for good: undo the sandbox, or keep it marked failed.
FailurePolicy = Literal["rollback", "keep"]


def run_stages(
    request: StageRequest, stages: list[Stage], *, on_failure: FailurePolicy | None = None
) -> list[StageOutcome]:
    """Run ``stages`` in order under the sandbox's lock; the first failure fails the flow run with its cause.

    Args:
        request: Which sandbox and lifecycle.
        stages: The stages to run, in order.
        on_failure: For a lasting failure of provision or bootstrap (see :mod:`sandbox.rollback`):
            ``rollback`` undoes the sandbox, ``keep`` marks it failed; ``None`` leaves it as it is.
    """
    logger = get_run_logger()
    outcomes = []
    with sandbox_lock(request.name, fleet_of(request.config_path), log=logger.info) as lock:
        for stage in stages:
            lock.check()
            state = STAGE_TASKS[stage](request, return_state=True)
            if not state.is_completed():
                error = state.result(raise_on_failure=False)
                failure = error if isinstance(error, BaseException) else None
                if on_failure is not None and should_roll_back(stage, failure):
                    if on_failure == "rollback":
                        logger.warning(rollback_task(request, stage, _cause(failure)).summary())
                    else:
                        logger.warning(keep_failed_task(request, stage, _cause(failure)))
            result: StageResult = state.result()  # raises the stage's error on failure
            outcome = StageOutcome(stage=stage, outcome=outcome_of(state, result), summary=result.summary)
            logger.info(f"stage {stage.value}: {outcome.outcome}: {result.summary}")
            outcomes.append(outcome)
    return outcomes


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
    with sandbox_lock(request.name, fleet_of(request.config_path), log=logger.info):
        preflight_task(request)
        record = register_task(validated, resume=resume)
        stages = list(STAGE_ORDER)
        if request.stop_after is not None:
            stages = stages[: stages.index(request.stop_after) + 1]
        stage_request = StageRequest(
            config_path=request.config_path,
            name=record.name,
            lifecycle_id=record.lifecycle_id,
            change=request.change,
        )
        outcomes = run_stages(stage_request, stages, on_failure="keep" if request.keep_on_failure else "rollback")
    return LifecycleReport(name=record.name, lifecycle_id=record.lifecycle_id, stages=outcomes)
