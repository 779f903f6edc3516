"""What a performance run asks for, and the settings its scenario resolves to.

A scenario (``performance.scenarios`` in fleet.yaml) names the load; the load
generator's defaults fill in what it leaves out, and per-run overrides (CLI
flags, flow parameters) win over both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from sandbox.config import FleetConfig
from sandbox.errors import InvalidInputError
from sandbox.lifecycle_request import SandboxChange, config_path_field, optional, plain_optional
from sandbox.redaction import redact_url

GeneratorType = Literal["http", "locust", "kubernetes-job"]


class LoadOverrides(BaseModel):
    """Per-run changes to a scenario's settings (CLI flags, flow parameters); empty fields keep the scenario's."""

    model_config = ConfigDict(title="Load")

    users: int | None = optional("Concurrent simulated users", title="Users", ge=1)
    spawn_rate: float | None = optional("Users started per second", title="Spawn rate", gt=0)
    duration_seconds: float | None = optional("How long the load runs", title="Duration (seconds)", gt=0)
    target_url: str | None = optional(
        "URL to load instead of the scenario's, e.g. https://shop.perf.example.com/", title="Target URL"
    )
    generator: GeneratorType | None = optional("Load generator instead of the configured one", title="Load generator")

    @field_validator("users", "spawn_rate", "duration_seconds", "target_url", "generator", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


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

    model_config = ConfigDict(title="Other scale")

    variables: dict[str, str] = Field(
        title="Terraform variables",
        description='Terraform variables replacing the source\'s, e.g. {"node_count": "5", "node_size": "xlarge"}',
        json_schema_extra={"examples": [{"node_count": "5", "node_size": "xlarge"}]},
    )


class PerformanceRequest(BaseModel):
    """Parameters of a performance-sandbox run (the flow's form in the Prefect UI)."""

    model_config = ConfigDict(title="Performance run")

    config_path: str = config_path_field()
    source_env: str = Field(
        default="production",
        title="Source environment",
        description="Environment whose topology and scale are cloned",
    )
    scenario: str | None = optional("Load scenario (default: performance.default_scenario)", title="Scenario")
    scale: Literal["source"] | ScaleOverride = Field(
        default="source",
        title="Scale",
        description="source (the source environment's full scale) or terraform variable overrides",
    )
    change: SandboxChange | None = Field(
        default=None,
        title="Change to test",
        description="A configuration change to test (edits in the sandbox's cluster directory)",
    )
    ttl: str | None = Field(
        default=None,
        title="Time to live",
        description="How long the sandbox may live if a teardown fails, e.g. 12h (the nightly cleanup's backstop)",
        json_schema_extra=plain_optional(),
    )
    load: LoadOverrides = Field(
        default_factory=LoadOverrides, title="Load", description="Per-run changes to the scenario's load"
    )
    owner: str | None = optional("Who asked for the run, e.g. an e-mail address", title="Owner")

    @field_validator("scenario", "owner", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    def terraform_overrides(self) -> dict[str, str]:
        """The terraform variables replacing the source's ({} at the source's scale)."""
        return dict(self.scale.variables) if isinstance(self.scale, ScaleOverride) else {}
