"""Plain data shared across layers: sandbox kinds, stages, records and stage results.

These are what tasks return and Prefect persists as checkpoints, so they hold
plain values only (never clients) and never secrets.
"""

from __future__ import annotations

from datetime import datetime
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
    stages: list[StageSummary] = Field(default_factory=list)

    def list_entry(self) -> dict[str, Any]:
        """The ``sandbox list --output json`` object (CLI.md contract)."""
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
