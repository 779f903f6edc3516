"""Checks before a new sandbox exists, as Prefect tasks (see :mod:`sandbox.preflight`).

Neither task is retried nor cached: nothing exists yet, so a failure is cheap to
rerun, and every flow run must check its own request and surroundings.
"""

from __future__ import annotations

from prefect import get_run_logger, task

from sandbox.config import load_config
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import SandboxStatus
from sandbox.preflight import check_request, preflight
from sandbox.stages.register import ValidatedRequest
from sandbox.wiring import build_drivers, open_inventory


@task(name="check-request", task_run_name="prepare: check request")
def check_request_task(request: LifecycleRequest) -> ValidatedRequest:
    """Refuse invalid input (name, environment, TTL, ticket, overrides) before anything exists.

    Returns:
        The request with what its check derived (branch, TTL): the flow registers it as it is.

    Raises:
        InvalidInputError: Naming the first problem found.
    """
    config = load_config(request.config_path)
    return check_request(config, request)


@task(name="preflight", task_run_name="prepare: preflight")
def preflight_task(request: LifecycleRequest) -> bool:
    """Check tools, the fleet remote and the repository before a *new* sandbox is registered.

    A sandbox already in the inventory (a resumed lifecycle) is not checked again.

    Returns:
        Whether the checks ran.

    Raises:
        ToolNotFoundError: terraform or git is missing.
        PreflightError: The fleet remote cannot be read.
        FleetRepoError: The repository cannot make this sandbox.
        InvalidInputError: An override the cluster module does not declare.
        ConflictError: Its branch or directory is taken (another sandbox's, or on the remote).
    """
    logger = get_run_logger()
    config = load_config(request.config_path)
    inventory = open_inventory(config)
    try:
        if inventory.find(request.name) is not None:
            logger.info(f"preflight: {request.name} is already registered; not checked again")
            return False
        in_use = {r.branch: r.name for r in inventory.list() if r.branch and r.status is not SandboxStatus.destroyed}
    finally:
        inventory.close()
    preflight(config, request, build_drivers(config).git, progress=logger.info, branches_in_use=in_use)
    return True
