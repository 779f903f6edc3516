"""Rolling back a failed provision or bootstrap, as a Prefect task (see :mod:`sandbox.rollback`)."""

from __future__ import annotations

from prefect import task

from sandbox.config import load_config
from sandbox.models import Stage
from sandbox.rollback import RollbackReport, keep_failed, roll_back
from tasks.common import StageRequest, stage_context


@task(name="rollback", task_run_name="after failure: rollback")
def rollback_task(request: StageRequest, stage: Stage, cause: str) -> RollbackReport:
    """Tear down what the sandbox has, delete its branch and settle its record.

    Not retried: a step that fails is listed in the report and left to the nightly
    cleanup or ``sandbox destroy``.

    Args:
        request: Which sandbox and lifecycle.
        stage: The stage whose failure is rolled back.
        cause: Its one-line error.
    """
    config = load_config(request.config_path)
    ctx = stage_context(config, request.name)
    try:
        return roll_back(ctx, stage, cause)
    finally:
        ctx.inventory.close()


@task(name="keep-failed", task_run_name="after failure: keep failed sandbox")
def keep_failed_task(request: StageRequest, stage: Stage, cause: str) -> str:
    """Mark the sandbox failed and keep what it has (the run asked for ``--keep-on-failure``).

    Returns:
        One line for the log.
    """
    config = load_config(request.config_path)
    ctx = stage_context(config, request.name)
    try:
        return keep_failed(ctx, stage, cause)
    finally:
        ctx.inventory.close()
