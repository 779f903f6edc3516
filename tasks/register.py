"""Registering a sandbox lifecycle in the inventory, as a Prefect task."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from sandbox.config import load_config
from sandbox.models import SandboxRecord
from sandbox.stages.register import ValidatedRequest, register
from sandbox.wiring import open_inventory


def _per_flow_run(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    # A retried flow run (Prefect UI "Retry") gets the record it created the
    # first time instead of a "sandbox already exists" conflict.
    # Scoped by the fleet as the stages' keys are (see tasks.common.stage_cache_key).
    validated = parameters["validated"]
    request = validated["request"] if isinstance(validated, dict) else validated.request
    name, config_path = (
        (request["name"], request["config_path"]) if isinstance(request, dict) else (request.name, request.config_path)
    )
    return f"{load_config(config_path).fleet_id}/{name}/register/{context.task_run.flow_run_id}"


@task(name="register", task_run_name="prepare: register", cache_key_fn=_per_flow_run, persist_result=True)
def register_task(validated: ValidatedRequest, resume: bool = False) -> SandboxRecord:
    """Create (or, when resuming, find) the sandbox's record.

    Args:
        validated: The lifecycle request as :func:`tasks.preflight.check_request_task` checked it
            (checked once per flow run).
        resume: Return the existing record instead of refusing a taken name.

    Returns:
        The inventory record, with its lifecycle id.
    """
    config = load_config(validated.request.config_path)
    inventory = open_inventory(config)
    try:
        return register(config, inventory, validated, resume=resume)
    finally:
        inventory.close()
