"""Names, branches and durations: the input rules every entry point shares."""

from __future__ import annotations

import re
from datetime import timedelta

from sandbox.errors import InvalidInputError, ProtectedEnvironmentError

#: Sandbox names become cluster names, directory names, terraform workspaces and
#: Kubernetes labels, so they follow the strictest of those: a DNS-1123 label,
#: starting with a letter, short enough for cloud cluster-name limits.
#: Every pattern here is applied with ``fullmatch``: ``$`` also matches before a
#: trailing newline, so ``name\n`` would pass a ``^...$`` check made with ``match``.
SANDBOX_NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
MAX_SANDBOX_NAME = 40
SUMMARY_RE = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
MAX_BRANCH = 100

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def validate_sandbox_name(name: str, protected: set[str]) -> str:
    """Check a sandbox name and return it.

    Raises:
        InvalidInputError: The name is empty, too long or not a lowercase DNS label.
        ProtectedEnvironmentError: The name is a long-lived environment or protected.
    """
    if not name:
        raise InvalidInputError("sandbox name is empty")
    if len(name) > MAX_SANDBOX_NAME:
        raise InvalidInputError(f"sandbox name {name!r} is {len(name)} characters long (at most {MAX_SANDBOX_NAME})")
    if not SANDBOX_NAME_RE.fullmatch(name):
        raise InvalidInputError(
            f"invalid sandbox name {name!r}: use lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
    if name in protected:
        raise ProtectedEnvironmentError(f"{name!r} is a long-lived or protected environment, not a sandbox")
    return name


def slugify_summary(summary: str) -> str:
    """Turn a free-text summary into the branch's summary part ('Try upgrade!' -> 'try-upgrade')."""
    return re.sub(r"[^a-z0-9]+", "-", summary.lower()).strip("-")


def branch_name(ticket: str, summary: str, ticket_pattern: str) -> str:
    """The sandbox branch ``<ticket>-<summary>`` (the seed's convention).

    Raises:
        InvalidInputError: The ticket does not match the configured pattern or the
            summary has nothing usable in it.
    """
    if not re.fullmatch(ticket_pattern, ticket or ""):
        raise InvalidInputError(f"ticket {ticket!r} does not match the ticket pattern {ticket_pattern!r}")
    slug = slugify_summary(summary or "")
    if not slug:
        raise InvalidInputError(f"summary {summary!r} has no letters or digits to name a branch")
    branch = f"{ticket}-{slug}"
    if len(branch) > MAX_BRANCH:
        raise InvalidInputError(f"branch name {branch!r} is longer than {MAX_BRANCH} characters")
    return branch


def validate_branch(branch: str, ticket_pattern: str) -> str:
    """Check that a given branch follows ``<ticket>-<summary>``.

    Raises:
        InvalidInputError: It does not.
    """
    match = re.fullmatch(rf"({ticket_pattern})-(.+)", branch or "")
    if not match or not SUMMARY_RE.fullmatch(match.group(match.lastindex or 1)):
        raise InvalidInputError(
            f"branch {branch!r} does not follow <ticket>-<summary> (ticket pattern {ticket_pattern!r}, "
            "summary in lowercase words joined by '-')"
        )
    if len(branch) > MAX_BRANCH:
        raise InvalidInputError(f"branch name {branch!r} is longer than {MAX_BRANCH} characters")
    return branch


def parse_duration(text: str) -> timedelta:
    """Parse a TTL such as ``72h``, ``3d``, ``90m`` or ``1d12h``.

    Raises:
        InvalidInputError: Not a positive duration in that form.
    """
    value = (text or "").strip().lower()
    parts = _DURATION_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise InvalidInputError(f"invalid duration {text!r}: use forms like 30m, 72h, 3d or 1d12h")
    try:
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
        if seconds <= 0:
            raise InvalidInputError(f"invalid duration {text!r}: must be longer than zero")
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        # More days than a timedelta holds, or more digits than int() reads (ValueError).
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InvalidInputError(f"invalid duration {shown!r}: too long (at most {timedelta.max.days} days)") from None


def format_duration(delta: timedelta) -> str:
    """Render a duration compactly (``3d``, ``1d12h``, ``45m``)."""
    seconds = int(delta.total_seconds())
    out = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out) or "0s"
