"""The deployments of ``prefect.yaml``, read as plain data (no Prefect import).

``prefect deploy --all`` registers them on a server for workers; ``python -m
deployments.serve`` serves the same entries from one process for a single
engineer. Both read the one file, so a deployment is described once. Anchors and
merge keys are resolved by the YAML loader; ``{{ $ENV }}`` placeholders are left
to Prefect (they are resolved where the deployment runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


class CronSchedule(BaseModel):
    """A cron schedule of a deployment (the only kind ``prefect.yaml`` uses here)."""

    model_config = ConfigDict(extra="forbid")

    cron: str = Field(description="Cron expression, e.g. '0 2 * * *'")
    timezone: str = Field(default="UTC", description="IANA time zone the expression is read in")
    active: bool = Field(default=True, description="Whether the server schedules runs from it")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Parameters of the scheduled runs")


class ConcurrencySpec(BaseModel):
    """A deployment's concurrency limit."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(ge=1, description="Runs of the deployment at once")
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = Field(
        default="ENQUEUE", description="What a run beyond the limit does: wait, or cancel itself"
    )


class WorkPoolRef(BaseModel):
    """Where a deployment's runs go when deployed (``prefect deploy``); ignored when served."""

    name: str
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


class DeploymentSpec(BaseModel):
    """One entry of ``deployments:`` in ``prefect.yaml``."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Deployment name (unique per flow)")
    entrypoint: str = Field(description="path/to/file.py:flow_function, relative to the project root")
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict, description="Default parameters of its runs")
    schedules: list[CronSchedule] = Field(default_factory=list)
    concurrency_limit: int | ConcurrencySpec | None = None
    enforce_parameter_schema: bool = True
    work_pool: WorkPoolRef | None = None

    @property
    def entrypoint_path(self) -> Path:
        """The entrypoint's file."""
        return PROJECT_ROOT / self.entrypoint.rsplit(":", 1)[0]

    @property
    def function_name(self) -> str:
        """The flow function's name in its file."""
        return self.entrypoint.rsplit(":", 1)[1]


def load_deployments(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """Every deployment of a ``prefect.yaml``.

    Raises:
        ValueError: The file has no deployments, or two share a name and entrypoint.
    """
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    specs = [DeploymentSpec.model_validate(entry) for entry in document.get("deployments") or []]
    if not specs:
        raise ValueError(f"{path} declares no deployments")
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        key = (spec.entrypoint, spec.name)
        if key in seen:
            raise ValueError(f"{path}: deployment {spec.name!r} of {spec.entrypoint} is declared twice")
        seen.add(key)
    return specs
