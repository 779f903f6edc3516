"""The sandbox lifecycle's request: what a user asks for, validated before anything is created.

These are the ``sandbox_lifecycle`` flow's parameter models (a performance run's
request carries a :class:`SandboxChange` too), so the Prefect UI renders them as forms.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from sandbox.models import SandboxKind, Stage


class ScalarChange(BaseModel):
    """Set one scalar in a YAML object of the sandbox's cluster directory."""

    file: str = Field(description="File relative to the sandbox's cluster directory, e.g. apps.yaml")
    kind: str = Field(description="Kind of the object to edit, e.g. Kustomization")
    name: str = Field(description="metadata.name of the object to edit")
    path: list[str] = Field(description="Keys from the object root to the scalar")
    value: str = Field(description="New value")


class SandboxChange(BaseModel):
    """A change to make in the sandbox right after it is cloned (committed on its branch)."""

    message: str = Field(description="Commit message")
    edits: list[ScalarChange] = Field(default_factory=list, description="Scalar edits to make")


class LifecycleRequest(BaseModel):
    """Parameters of a sandbox lifecycle run."""

    config_path: str = Field(default="fleet.yaml", description="Path of fleet.yaml on the worker")
    name: str = Field(description="Sandbox name: lowercase letters, digits and '-'")
    source_env: str = Field(default="development", description="Long-lived environment to clone")
    kind: SandboxKind = Field(default=SandboxKind.platform, description="platform change or performance test")
    ticket: str | None = Field(default=None, description="Ticket id, e.g. OPS-1 (platform sandboxes)")
    summary: str | None = Field(default=None, description="Short summary, becomes the branch's suffix")
    ttl: str | None = Field(default=None, description="Time to live, e.g. 72h (default from config)")
    keep: bool = Field(default=False, description="Protect from the nightly cleanup")
    keep_on_failure: bool = Field(default=False, description="Keep what was created if a stage fails")
    overrides: dict[str, str] = Field(
        default_factory=dict, description="Terraform variable overrides, e.g. kubernetes_version"
    )
    change: SandboxChange | None = Field(default=None, description="A change to make in the sandbox after cloning")
    stop_after: Stage | None = Field(default=None, description="Run stages up to and including this one (default: all)")
    owner: str | None = Field(default=None, description="Who owns the sandbox")
