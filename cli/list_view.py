"""What ``sandbox list`` shows: expiry, protection and cost next to each sandbox.

``cli/main.py``'s ``list`` command calls :func:`list_entries` (``--output json``)
and :func:`list_lines` (text). Records made before costs were stored get
today's estimate from ``cost`` in fleet.yaml.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.config import FleetConfig
from sandbox.cost import with_cost
from sandbox.inventory import utcnow
from sandbox.models import SandboxRecord, StageStatus


def list_entries(
    records: list[SandboxRecord], config: FleetConfig, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The ``sandbox list --output json`` array (docs/cli.md's fields, plus cost and expiry)."""
    moment = now or utcnow()
    return [with_cost(config, r).list_entry(moment) for r in records]


def _expiry(record: SandboxRecord, now: datetime) -> str:
    text = record.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if record.keep:
        return f"{text} (keep)"
    return f"{text} (expired)" if record.is_expired(now) else text


def list_lines(records: list[SandboxRecord], config: FleetConfig, now: datetime | None = None) -> list[str]:
    """The text table of ``sandbox list``: one line per sandbox, with expiry, scale and cost so far."""
    if not records:
        return ["no sandboxes"]
    moment = now or utcnow()
    currency = config.cost.currency
    lines = [
        f"{'NAME':<24} {'KIND':<12} {'FROM':<12} {'STATUS':<17} {'EXPIRES':<31} {'SCALE':<12} "
        f"{'COST/H':>7} {'COST':>9}  STAGES"
    ]
    total = 0.0
    for record in records:
        r = with_cost(config, record)
        cost = r.cost_so_far(moment)
        total += cost or 0.0
        done = sum(1 for s in r.stages if s.status is StageStatus.completed)
        hourly = "-" if r.hourly_cost is None else f"{r.hourly_cost:.2f}"
        lines.append(
            f"{r.name:<24} {r.kind.value:<12} {r.source_env:<12} {r.status.value:<17} {_expiry(r, moment):<31} "
            f"{r.scale or '-':<12} {hourly:>7} {'-' if cost is None else f'{cost:.2f}':>9}  {done}/{len(r.stages)}"
        )
    lines.append(f"cost so far (estimated): {total:.2f} {currency}")
    return lines
