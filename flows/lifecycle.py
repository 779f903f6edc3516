"""The sandbox lifecycle flow: provision → clone → bootstrap → validate →
performance test → teardown → promote, each a retried, checkpointed task."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State
from pydantic import BaseModel, Field

from sandbox.models import STAGE_ORDER, Stage, StageResult
from sandbox.requests import LifecycleRequest
from tasks.bootstrap import bootstrap_task
from tasks.clone import clone_task
from tasks.common import StageRequest
from tasks.performance_test import performance_test_task
from tasks.promote import promote_task
from tasks.provision import provision_task
from tasks.register import register_task
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


def run_stages(request: StageRequest, stages: list[Stage]) -> list[StageOutcome]:
    """Run ``stages`` in order; the first failure fails the flow run with its cause."""
    logger = get_run_logger()
    outcomes = []
    for stage in stages:
        state = STAGE_TASKS[stage](request, return_state=True)
        result: StageResult = state.result()  # raises the stage's error on failure
        outcome = StageOutcome(stage=stage, outcome=outcome_of(state, result), summary=result.summary)
        logger.info(f"stage {stage.value}: {outcome.outcome}: {result.summary}")
        outcomes.append(outcome)
    return outcomes


@flow(name="sandbox-lifecycle", flow_run_name="{request.name}", log_prints=True)
def sandbox_lifecycle(request: LifecycleRequest, resume: bool = False) -> LifecycleReport:
    """Run a sandbox's whole lifecycle, or resume it from its last completed stage.

    Args:
        request: What sandbox to make, from which environment, with which change.
        resume: Continue an existing sandbox of this name instead of refusing it.

    Returns:
        Each stage with its outcome (executed, cached or already completed).
    """
    record = register_task(request, resume=resume)
    stages = list(STAGE_ORDER)
    if request.stop_after is not None:
        stages = stages[: stages.index(request.stop_after) + 1]
    stage_request = StageRequest(
        config_path=request.config_path,
        name=record.name,
        lifecycle_id=record.lifecycle_id,
        change=request.change,
    )
    outcomes = run_stages(stage_request, stages)
    return LifecycleReport(name=record.name, lifecycle_id=record.lifecycle_id, stages=outcomes)
