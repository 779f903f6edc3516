"""What a performance run asks for, and the settings its scenario resolves to.

A scenario (``performance.scenarios`` in fleet.yaml) names the load; the load
generator's defaults fill in what it leaves out, and per-run overrides (CLI
flags, flow parameters) win over both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer

from sandbox.config import FleetConfig
from sandbox.errors import InvalidInputError
from sandbox.lifecycle_request import SandboxChange
from sandbox.redaction import redact_url

GeneratorType = Literal["http", "locust", "kubernetes-job"]


class LoadOverrides(BaseModel):
    """Per-run changes to a scenario's settings (CLI flags, flow parameters)."""

    users: int | None = Field(default=None, ge=1, description="Concurrent simulated users")
    spawn_rate: float | None = Field(default=None, gt=0, description="Users started per second")
    duration_seconds: float | None = Field(default=None, gt=0, description="How long the load runs")
    target_url: str | None = Field(default=None, description="URL to load instead of the scenario's")
    generator: GeneratorType | None = Field(default=None, description="Load generator instead of the configured one")


class ScenarioSettings(BaseModel):
    """Everything a load run needs, resolved from the scenario, the generator's defaults and overrides.

    Serialized (stage results, ``perf_runs``, reports) without the target URL's credentials.
    """

    scenario: str
    generator: GeneratorType
    users: int
    spawn_rate: float | None = None
    duration_seconds: float
    target_url: str | None = Field(default=None, description="None: the local stand-in target")
    target_service: str | None = Field(default=None, description="namespace/name[:port] of a Service to load")
    target_ingress: str | None = Field(default=None, description="namespace/name of an Ingress to load")
    path: str = "/"
    locustfile: str | None = None
    local_target_delay_ms: float = 0.0

    @field_serializer("target_url")
    def _without_credentials(self, value: str | None) -> str | None:
        return redact_url(value)

    def comparable_with(self, other: Mapping[str, Any]) -> list[str]:
        """Differences from another run's settings that make percentages compare unlike runs."""
        notes = []
        for key in ("generator", "users", "duration_seconds", "target_url", "path", "local_target_delay_ms"):
            mine = redact_url(self.target_url) if key == "target_url" else getattr(self, key)
            theirs = other.get(key, mine)
            if theirs != mine:
                notes.append(f"{key} {theirs} -> {mine}")
        return notes


def resolve_scenario(config: FleetConfig, name: str | None, overrides: LoadOverrides | None = None) -> ScenarioSettings:
    """The settings of a named scenario (the configured default when ``name`` is empty).

    Raises:
        InvalidInputError: Unknown scenario.
    """
    perf = config.performance
    name = name or perf.default_scenario
    if name not in perf.scenarios:
        known = ", ".join(sorted(perf.scenarios)) or "none"
        raise InvalidInputError(f"unknown performance scenario {name!r} (known: {known})")
    scenario = perf.scenarios[name]
    load = config.drivers.load_generator
    overrides = overrides or LoadOverrides()
    locustfile = str(config.path(scenario.locustfile)) if scenario.locustfile else None
    return ScenarioSettings(
        scenario=name,
        generator=overrides.generator or load.type,
        users=overrides.users or scenario.users or load.users,
        spawn_rate=overrides.spawn_rate or scenario.spawn_rate or load.spawn_rate,
        duration_seconds=overrides.duration_seconds or scenario.duration_seconds or load.duration_seconds,
        target_url=overrides.target_url or scenario.target_url or load.target_url,
        target_service=scenario.target_service,
        target_ingress=scenario.target_ingress,
        path=scenario.path,
        locustfile=locustfile,
        local_target_delay_ms=perf.local_target_delay_ms,
    )


class ScaleOverride(BaseModel):
    """Provision the sandbox at another scale than the source environment's."""

    variables: dict[str, str] = Field(
        description="Terraform variables replacing the source's, e.g. {node_count: '5', node_size: 'xlarge'}"
    )


class PerformanceRequest(BaseModel):
    """Parameters of a performance-sandbox run (the flow's form in the Prefect UI)."""

    config_path: str = Field(default="fleet.yaml", description="Path of fleet.yaml on the worker")
    source_env: str = Field(default="production", description="Environment whose topology and scale are cloned")
    scenario: str | None = Field(default=None, description="Load scenario (default: performance.default_scenario)")
    scale: Literal["source"] | ScaleOverride = Field(
        default="source", description="source (the source environment's full scale) or terraform variable overrides"
    )
    change: SandboxChange | None = Field(
        default=None, description="A configuration change to test (edits in the sandbox's cluster directory)"
    )
    ttl: str | None = Field(default=None, description="Time to live, e.g. 12h (the nightly cleanup's backstop)")
    load: LoadOverrides = Field(default_factory=LoadOverrides, description="Per-run changes to the scenario's load")
    owner: str | None = Field(default=None, description="Who asked for the run")

    def terraform_overrides(self) -> dict[str, str]:
        """The terraform variables replacing the source's ({} at the source's scale)."""
        return dict(self.scale.variables) if isinstance(self.scale, ScaleOverride) else {}
