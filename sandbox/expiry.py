"""Time to live: pushing a sandbox's expiry out and protecting it from the nightly cleanup.

``sandbox extend NAME --ttl D`` adds ``D`` to the *later* of now and the
current expiry:

* a sandbox that has not expired yet keeps the time it had and gains ``D``
  (extending never shortens a lifetime, whatever the order of two extends);
* an expired one (not yet cleaned up) lives ``D`` from now -- adding to a past
  expiry could leave it expired and be destroyed the same night.

The result may lie at most ``sandbox.max_ttl`` after now; a longer request is
refused (exit 2) rather than silently capped, so nobody believes they have more
time than they got. Repeated extends are allowed: each is a deliberate decision
recorded in the inventory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sandbox.config import FleetConfig
from sandbox.errors import ConflictError, InvalidInputError
from sandbox.inventory import Inventory, utcnow
from sandbox.models import SandboxRecord, SandboxStatus
from sandbox.naming import format_duration, parse_duration


@dataclass(frozen=True)
class Extension:
    """What ``extend`` changed."""

    record: SandboxRecord
    previous_expiry: datetime
    keep_changed: bool


def new_expiry(current: datetime, ttl: str, *, now: datetime, max_ttl: str) -> datetime:
    """``max(now, current) + ttl``.

    Raises:
        InvalidInputError: Invalid durations, or the result lies more than ``max_ttl`` after now.
    """
    delta = parse_duration(ttl)
    limit = parse_duration(max_ttl)
    ahead = max(now, current) - now
    # Compared before adding: a huge TTL would overflow the datetime, not just exceed the maximum.
    if delta > limit:
        raise InvalidInputError(f"extending by {ttl} is beyond the maximum TTL {max_ttl}")
    if ahead + delta > limit:
        raise InvalidInputError(
            f"extending by {ttl} would expire {format_duration(ahead + delta)} from now, "
            f"beyond the maximum TTL {max_ttl}"
        )
    return max(now, current) + delta


def extend(
    config: FleetConfig,
    inventory: Inventory,
    name: str,
    *,
    ttl: str | None = None,
    keep: bool | None = None,
    now: datetime | None = None,
) -> Extension:
    """Push a sandbox's expiry out and/or set its protection from cleanup.

    Args:
        config: The fleet configuration (its ``max_ttl``).
        inventory: The inventory holding the sandbox.
        name: The sandbox.
        ttl: How much longer it may live (see the module docstring); ``None`` leaves the expiry.
        keep: Protect it from (``True``) or expose it to (``False``) the nightly cleanup; ``None`` leaves it.
        now: The current time (tests).

    Raises:
        InvalidInputError: Nothing asked, an invalid duration, or beyond ``max_ttl``.
        NotFoundError: No such sandbox.
        ConflictError: The sandbox is already destroyed.
    """
    if ttl is None and keep is None:
        raise InvalidInputError("nothing to change: give --ttl and/or --keep/--no-keep")
    if ttl is not None:
        parse_duration(ttl)  # bad input is named before the sandbox is looked up
    moment = now or utcnow()
    record = inventory.get(name)
    if record.status is SandboxStatus.destroyed:
        raise ConflictError(f"sandbox {name!r} is destroyed; there is nothing to extend")
    fields: dict[str, object] = {}
    if ttl is not None:
        fields["expires_at"] = new_expiry(record.expires_at, ttl, now=moment, max_ttl=config.sandbox.max_ttl)
    if keep is not None and keep != record.keep:
        fields["keep"] = keep
    updated = inventory.update(name, **fields) if fields else record
    return Extension(record=updated, previous_expiry=record.expires_at, keep_changed="keep" in fields)
