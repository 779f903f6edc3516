"""Cost estimates: what a sandbox costs per hour, so far, and what cleaning it up saved.

All numbers are *estimates* from ``cost`` in ``fleet.yaml`` (an hourly rate per
node size); no cloud bill is read. A sandbox's scale is the node size and count
of its terraform variables: the source environment's, then its overrides, which
is what the provision stage applies (a performance sandbox cloned from
production is costed at production's scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.config import FleetConfig
from sandbox.models import SandboxRecord


@dataclass(frozen=True)
class CostEstimate:
    """A sandbox's scale and estimated hourly cost.

    Attributes:
        scale: ``"<count> x <size>"`` (``None`` when the variables name no size).
        hourly_cost: Cost per hour; ``None`` when no rate covers the size.
    """

    scale: str | None
    hourly_cost: float | None


def _count(value: Any) -> int | None:
    try:
        count = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return count if count >= 0 else None


def estimate_for_variables(config: FleetConfig, variables: Mapping[str, Any]) -> CostEstimate:
    """The scale and hourly cost that ``variables`` (terraform's) describe."""
    settings = config.cost
    size = variables.get(settings.size_variable)
    if size is None or str(size) == "":
        return CostEstimate(scale=None, hourly_cost=None)
    raw_count = variables.get(settings.count_variable, 1)
    count = _count(raw_count)
    scale = f"{count if count is not None else raw_count} x {size}"
    rate = settings.hourly_rates.get(str(size), settings.default_hourly_rate)
    if rate is None or count is None:
        return CostEstimate(scale=scale, hourly_cost=None)
    return CostEstimate(scale=scale, hourly_cost=round(rate * count, 4))


def estimate(config: FleetConfig, source_env: str, overrides: Mapping[str, Any]) -> CostEstimate:
    """The scale and hourly cost of a sandbox cloned from ``source_env`` with ``overrides``.

    An unknown environment has no estimate (``CostEstimate(None, None)``).
    """
    env = config.environments.get(source_env)
    variables: dict[str, Any] = dict(env.terraform.variables) if env is not None else {}
    if env is None and not overrides:
        return CostEstimate(scale=None, hourly_cost=None)
    variables.update(overrides)
    return estimate_for_variables(config, variables)


def with_cost(config: FleetConfig, record: SandboxRecord) -> SandboxRecord:
    """``record`` with its scale and hourly cost filled in from the configuration when it has none.

    Records store the estimate made at creation; older records (and those made
    by other tools) get today's estimate.
    """
    if record.hourly_cost is not None and record.scale is not None:
        return record
    found = estimate(config, record.source_env, record.overrides)
    return record.model_copy(
        update={
            "scale": record.scale or found.scale,
            "hourly_cost": record.hourly_cost if record.hourly_cost is not None else found.hourly_cost,
        }
    )


def estimated_saving(
    hourly_cost: float | None, *, now: datetime, expires_at: datetime | None, unnoticed_hours: float
) -> float | None:
    """What destroying a sandbox at ``now`` saved, by an explicit counterfactual.

    Nobody can know how long a forgotten sandbox would have run had the cleanup
    not destroyed it. This estimate *assumes* a person would have noticed and
    destroyed it ``unnoticed_hours`` (``cost.unnoticed_hours``) after it expired,
    or, for an orphan that has no expiry, ``unnoticed_hours`` after cleanup found
    it. The saving is the hourly cost over the hours between ``now`` and that
    assumed moment (never negative). It is as good as that assumption and no
    better: read it as an order of magnitude, not as money on a bill.

    Args:
        hourly_cost: The sandbox's hourly cost (``None``: unknown, no estimate).
        now: When cleanup destroyed it.
        expires_at: Its expiry; ``None`` for orphans.
        unnoticed_hours: The assumed time to notice.
    """
    if hourly_cost is None:
        return None
    if expires_at is None:
        hours = unnoticed_hours
    else:
        hours = max(0.0, unnoticed_hours - (now - expires_at).total_seconds() / 3600)
    return round(hourly_cost * hours, 2)
