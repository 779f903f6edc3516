"""The fleet at a glance: each long-lived environment and each live sandbox, in one report.

For each long-lived environment: what it tracks (a branch, a semver range or a
fixed tag, from fleet.yaml), the revision its root Kustomization last applied
and whether everything Flux applies there is Ready. An environment whose cluster
this tool cannot reach is shown as such, with the reason; the others are still
reported. For each sandbox not destroyed: owner, kind, status, age, expiry
and the estimated cost so far.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from sandbox.config import FleetConfig
from sandbox.drivers.cluster import ClusterDriver
from sandbox.errors import SandboxError
from sandbox.flux import readiness
from sandbox.models import SandboxRecord, SandboxStatus
from sandbox.naming import format_duration


class EnvironmentLine(BaseModel):
    """One long-lived environment's state."""

    name: str
    tracks: str = Field(description="What it tracks: 'branch main', 'semver 1.2.x' or 'tag 1.2.3'")
    applied: str | None = Field(default=None, description="The revision its root Kustomization last applied")
    ready: bool = False
    state: str = Field(description="'Ready', what is not Ready, or why the cluster could not be read")


class SandboxLine(BaseModel):
    """One live sandbox."""

    name: str
    owner: str | None
    kind: str
    status: str
    age: str
    expiry: str = Field(description="'in 2d3h', 'EXPIRED 4h ago' or 'kept (--keep)'")
    cost_so_far: float | None


class FleetStatus(BaseModel):
    """The report."""

    taken_at: datetime
    environments: list[EnvironmentLine]
    sandboxes: list[SandboxLine]

    def markdown(self) -> str:
        """The report as Markdown (the fleet status artifact)."""
        ready = sum(1 for env in self.environments if env.ready)
        lines = [
            f"# Fleet status at {self.taken_at:%Y-%m-%d %H:%M} UTC",
            "",
            f"{ready} of {len(self.environments)} long-lived environment(s) Ready; "
            f"{len(self.sandboxes)} live sandbox(es).",
            "",
            "## Long-lived environments",
            "",
            "| environment | tracks | applied revision | state |",
            "|---|---|---|---|",
            *(
                f"| {env.name} | {env.tracks} | {_code(env.applied)} | {_cell(env.state)} |"
                for env in self.environments
            ),
            "",
            "## Live sandboxes",
            "",
        ]
        if not self.sandboxes:
            return "\n".join([*lines, "None."]) + "\n"
        lines += [
            "| sandbox | owner | kind | status | age | expiry | cost so far |",
            "|---|---|---|---|---:|---|---:|",
            *(
                f"| {s.name} | {_cell(s.owner or '–')} | {s.kind} | {s.status} | {s.age} | {s.expiry} | "
                f"{'–' if s.cost_so_far is None else f'{s.cost_so_far:,.2f}'} |"
                for s in self.sandboxes
            ),
        ]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str | None) -> str:
    return f"`{_cell(text)}`" if text else "–"


def tracks(config: FleetConfig, env: str) -> str:
    """What ``env`` tracks, as fleet.yaml says."""
    tracking = config.environments[env].tracking
    value = {"branch": tracking.branch, "semver": tracking.range, "tag": tracking.tag}[tracking.type.value]
    return f"{tracking.type.value} {value}"


def environment_line(config: FleetConfig, env: str, connect: Callable[[str], ClusterDriver]) -> EnvironmentLine:
    """One environment's state, read from its cluster (``connect(env)``); an unreachable cluster is a state too."""
    from sandbox.watch import ROOT_KUSTOMIZATION, WATCHED_KINDS

    line = EnvironmentLine(name=env, tracks=tracks(config, env), state="")
    try:
        cluster = connect(env)
        objects = [
            obj
            for api, kind in WATCHED_KINDS
            if kind in ("Kustomization", "HelmRelease")
            for obj in cluster.list(api, kind)
        ]
        root = cluster.get(ROOT_KUSTOMIZATION)
    except SandboxError as exc:
        line.state = f"cluster not read: {' '.join(str(exc).split())}"
        return line
    if root is None:
        line.state = f"{ROOT_KUSTOMIZATION} not found: is Flux bootstrapped?"
        return line
    line.applied = str((root.get("status") or {}).get("lastAppliedRevision") or "") or None
    states = [readiness(obj) for obj in objects]
    not_ready = [state for state in states if not state.ready]
    line.ready = not not_ready and bool(states)
    if line.ready:
        line.state = f"Ready ({len(states)} Kustomization(s) and HelmRelease(s))"
    else:
        shown = "; ".join(state.line() for state in not_ready[:3])
        more = f" and {len(not_ready) - 3} more" if len(not_ready) > 3 else ""
        line.state = f"{len(not_ready)} of {len(states)} not Ready: {shown}{more}" if states else "nothing applied"
    return line


def _about(delta: timedelta) -> str:
    """A duration to the minute (``2d23h58m``; under a minute ``<1m``): a glance needs no seconds."""
    minutes = int(delta.total_seconds() // 60)
    return format_duration(timedelta(minutes=minutes)) if minutes > 0 else "<1m"


def sandbox_line(record: SandboxRecord, now: datetime) -> SandboxLine:
    """One sandbox's line."""
    if record.keep:
        expiry = "kept (--keep)"
    elif record.expires_at <= now:
        expiry = f"EXPIRED {_about(now - record.expires_at)} ago"
    else:
        expiry = f"in {_about(record.expires_at - now)}"
    return SandboxLine(
        name=record.name,
        owner=record.owner,
        kind=record.kind.value,
        status=record.status.value,
        age=_about(now - record.created_at),
        expiry=expiry,
        cost_so_far=record.cost_so_far(now),
    )


def fleet_status(
    config: FleetConfig, records: Iterable[SandboxRecord], connect: Callable[[str], ClusterDriver], now: datetime
) -> FleetStatus:
    """The whole report.

    Args:
        config: The fleet.
        records: The inventory's records (destroyed ones are left out).
        connect: Reaches an environment's cluster (``sandbox.environments.connect_environment``).
        now: The time of the report.
    """
    return FleetStatus(
        taken_at=now,
        environments=[environment_line(config, env, connect) for env in config.environments],
        sandboxes=[
            sandbox_line(record, now)
            for record in sorted(records, key=lambda r: r.created_at)
            if record.status is not SandboxStatus.destroyed
        ],
    )
