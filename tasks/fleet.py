"""Fleet-wide tasks the UI runs: the fleet status report, extending a sandbox, accepting a baseline.

Each is what a CLI command does (``sandbox list``/``watch``, ``sandbox extend``,
``sandbox perf accept``), as a Prefect task whose result reads on the run page.
"""

from __future__ import annotations

from typing import Literal

from prefect import get_run_logger, task
from pydantic import BaseModel, ConfigDict, Field

from sandbox.config import load_config
from sandbox.cost import with_cost
from sandbox.expiry import extend
from sandbox.fleet_status import FleetStatus, fleet_status
from sandbox.inventory import utcnow
from sandbox.lifecycle_request import optional
from sandbox.naming import validate_sandbox_name
from sandbox.perf.store import PerfStore
from sandbox.wiring import build_drivers, open_inventory
from tasks.artifacts import create_markdown_artifact

#: The fleet status artifact's key: each report lands in its history.
FLEET_STATUS_KEY = "fleet-status"


@task(name="fleet-status", task_run_name="read the fleet's state")
def fleet_status_task(config_path: str) -> FleetStatus:
    """Read each long-lived environment's cluster and the inventory; publish the ``fleet-status`` artifact.

    Args:
        config_path: fleet.yaml.

    Returns:
        The report.
    """
    from sandbox.environments import connect_environment

    config = load_config(config_path)
    drivers = build_drivers(config)
    inventory = open_inventory(config)
    try:
        records = [with_cost(config, record) for record in inventory.list()]
    finally:
        inventory.close()
    status = fleet_status(
        config,
        records,
        lambda env: connect_environment(config, env, drivers.terraform, drivers.git),
        now=utcnow(),
    )
    ready = sum(1 for env in status.environments if env.ready)
    description = (
        f"{ready} of {len(status.environments)} environment(s) Ready; {len(status.sandboxes)} live sandbox(es)"
    )
    create_markdown_artifact(key=FLEET_STATUS_KEY, markdown=status.markdown(), description=description)
    logger = get_run_logger()
    logger.info(description)
    for env in status.environments:
        logger.info(f"{env.name} ({env.tracks}): {env.applied or 'no revision applied'}: {env.state}")
    return status


KeepChoice = Literal["unchanged", "keep", "no-keep"]


class ExtendRequest(BaseModel):
    """What to change of a sandbox's expiry (``sandbox extend``)."""

    model_config = ConfigDict(title="Sandbox")

    name: str = Field(title="Sandbox name", description="The sandbox, as `sandbox list` shows it")
    ttl: str | None = optional(
        "Add this to the later of now and the current expiry (at most sandbox.max_ttl from now), e.g. 24h",
        title="Extend by",
    )
    keep: KeepChoice = Field(
        default="unchanged",
        title="Protection from the nightly cleanup",
        description="keep: protect it; no-keep: expose it again; unchanged: leave as it is",
    )


@task(name="extend-sandbox", task_run_name="extend {request.name}")
def extend_task(config_path: str, request: ExtendRequest) -> str:
    """Push a sandbox's expiry out and/or set its protection from the nightly cleanup.

    Returns:
        What changed, in one line.

    Raises:
        InvalidInputError: Nothing asked, a bad name or duration, or beyond ``max_ttl``.
        NotFoundError: No such sandbox.
    """
    config = load_config(config_path)
    validate_sandbox_name(request.name, config.protected_names())
    keep = None if request.keep == "unchanged" else request.keep == "keep"
    inventory = open_inventory(config)
    try:
        done = extend(config, inventory, request.name, ttl=request.ttl or None, keep=keep)
    finally:
        inventory.close()
    record = done.record
    parts = []
    if request.ttl:
        parts.append(f"expires {record.expires_at:%Y-%m-%dT%H:%M:%SZ} (was {done.previous_expiry:%Y-%m-%dT%H:%M:%SZ})")
    if keep is not None:
        state = "protected from cleanup" if record.keep else "no longer protected from cleanup"
        parts.append(state + ("" if done.keep_changed else " (unchanged)"))
    line = f"{request.name}: {'; '.join(parts)}"
    get_run_logger().info(line)
    return line


@task(name="accept-baseline", task_run_name="accept run {run_id} as baseline")
def accept_baseline_task(config_path: str, run_id: str) -> str:
    """Make a measured performance run the baseline of its scenario and source environment.

    Returns:
        What changed, in one line.

    Raises:
        PerfRunNotFoundError: Unknown run.
        ConflictError: The run has no measurement.
    """
    config = load_config(config_path)
    with PerfStore(config.inventory_url) as store:
        run = store.find(run_id)
        previous = store.baseline(run.scenario, run.source_env) if run is not None else None
        accepted = store.accept(run_id)
    line = f"run {accepted.run_id} is the baseline of {accepted.scenario} from {accepted.source_env}" + (
        f" (was run {previous.run_id})" if previous and previous.run_id != accepted.run_id else ""
    )
    get_run_logger().info(line)
    return line
