"""Plain data shared across layers: sandbox kinds, stages, records and stage results.

These are what tasks return and Prefect persists as checkpoints, so they hold
plain values only (never clients) and never secrets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SandboxKind(StrEnum):
    """The seed's two sandbox types."""

    platform = "platform"
    performance = "performance"


class Stage(StrEnum):
    """Lifecycle stages, in the order a lifecycle runs them."""

    provision = "provision"
    clone = "clone"
    bootstrap = "bootstrap"
    validate = "validate"
    performance_test = "performance-test"
    teardown = "teardown"
    promote = "promote"


#: The lifecycle's order of stages.
STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)


class SandboxStatus(StrEnum):
    """Where a sandbox is in its life."""

    creating = "creating"
    active = "active"
    failed = "failed"
    rolled_back = "rolled-back"  # a failed provision/bootstrap undone; resuming starts the lifecycle over
    tearing_down = "tearing-down"
    teardown_blocked = "teardown-blocked"
    destroyed = "destroyed"


class StageStatus(StrEnum):
    """Outcome of a stage in the inventory."""

    running = "running"
    completed = "completed"
    failed = "failed"
    pending = "pending"


class StageSummary(BaseModel):
    """One stage of a sandbox, as ``sandbox list`` shows it."""

    name: Stage
    status: StageStatus
    executions: int = Field(description="Completed runs of the stage")


class SandboxRecord(BaseModel):
    """A sandbox as the inventory holds it."""

    model_config = ConfigDict(use_enum_values=False)

    name: str
    kind: SandboxKind
    source_env: str
    ticket: str | None = None
    summary: str | None = None
    branch: str | None = None
    owner: str | None = None
    lifecycle_id: str
    status: SandboxStatus
    created_at: datetime
    expires_at: datetime
    keep: bool = False
    forced_destroy: bool = False
    failed_stage: str | None = None
    last_error: str | None = None
    terraform_workdir: str | None = None
    terraform_workspace: str | None = None
    cluster_endpoint: str | None = None
    kubernetes_version: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    pull_request_url: str | None = None
    scale: str | None = Field(default=None, description="Cluster scale, e.g. '3 x large' (what the cost is based on)")
    hourly_cost: float | None = Field(default=None, description="Estimated cost per hour at that scale")
    updated_at: datetime | None = Field(default=None, description="Last change of the record or a stage")
    destroyed_at: datetime | None = Field(default=None, description="When the sandbox was recorded destroyed")
    adopted: bool = Field(default=False, description="Made by cleanup for an orphan it found (no record before)")
    stages: list[StageSummary] = Field(default_factory=list)

    def is_expired(self, now: datetime) -> bool:
        """Past its expiry and not destroyed."""
        return self.status is not SandboxStatus.destroyed and self.expires_at <= now

    def running_hours(self, now: datetime) -> float | None:
        """Hours from creation to destruction (or to ``now`` while it exists); ``None`` if unknown."""
        if self.status is SandboxStatus.destroyed:
            end = self.destroyed_at or self.updated_at  # records older than destroyed_at: last change
            if end is None:
                return None
        else:
            end = now
        return max(0.0, (end - self.created_at).total_seconds() / 3600)

    def cost_so_far(self, now: datetime) -> float | None:
        """Estimated cost from creation to destruction (or ``now``); ``None`` without a rate."""
        hours = self.running_hours(now)
        if self.hourly_cost is None or hours is None:
            return None
        return round(self.hourly_cost * hours, 2)

    @property
    def terraform_state_ref(self) -> str | None:
        """Where the sandbox's terraform state is: ``<working dir>#<workspace>``."""
        if not self.terraform_workdir:
            return None
        return f"{self.terraform_workdir}#{self.terraform_workspace or self.name}"

    def list_entry(self, now: datetime | None = None) -> dict[str, Any]:
        """The ``sandbox list --output json`` object (docs/cli.md's contract; cost fields added)."""
        moment = now or datetime.now(UTC)
        return {
            "name": self.name,
            "kind": self.kind.value,
            "source_env": self.source_env,
            "status": self.status.value,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "ticket": self.ticket,
            "branch": self.branch,
            "lifecycle_id": self.lifecycle_id,
            "keep": self.keep,
            "forced_destroy": self.forced_destroy,
            "pull_request_url": self.pull_request_url,
            "owner": self.owner,
            "expired": self.is_expired(moment),
            "destroyed_at": _iso(self.destroyed_at) if self.destroyed_at else None,
            "scale": self.scale,
            "hourly_cost": self.hourly_cost,
            "cost_so_far": self.cost_so_far(moment),
            "stages": [
                {"name": s.name.value, "status": s.status.value, "executions": s.executions} for s in self.stages
            ],
        }


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class StageResult(BaseModel):
    """What a stage returns: a checkpoint Prefect persists and the inventory keeps.

    Attributes:
        stage: Which stage.
        summary: One line for people.
        details: Plain data the later stages read (never secrets).
    """

    stage: Stage
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)
    reused: bool = Field(default=False, description="Completed earlier; taken from the inventory")
