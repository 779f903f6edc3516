"""Configuration: ``fleet.yaml`` as pydantic models.

Every field carries a description, so the same models document the file and
render as forms in the Prefect UI. Relative paths in the file are resolved
against the file's own directory by :func:`load_config`.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sandbox.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("fleet.yaml")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrackingKind(StrEnum):
    """How a long-lived environment tracks the platform stack (the seed's three rules)."""

    branch = "branch"
    semver = "semver"
    tag = "tag"


class Tracking(_Model):
    """How an environment follows the platform stack."""

    type: TrackingKind = Field(description="branch (development), semver range (staging) or fixed tag (production)")
    branch: str | None = Field(default=None, description="Git branch tracked (type=branch), e.g. main")
    range: str | None = Field(default=None, description="Masterminds semver range (type=semver), e.g. 1.2.x")
    tag: str | None = Field(default=None, description="Fixed artifact tag (type=tag), e.g. 1.2.3")

    @model_validator(mode="after")
    def _value_for_type(self) -> Tracking:
        needed = {"branch": self.branch, "semver": self.range, "tag": self.tag}[self.type.value]
        if not needed:
            field = {"branch": "branch", "semver": "range", "tag": "tag"}[self.type.value]
            raise ValueError(f"tracking type {self.type.value!r} needs {field!r}")
        return self


class TerraformSettings(_Model):
    """The cluster's infrastructure-as-code module and its variables."""

    module: str = Field(description="Path of the terraform module inside the fleet repository")
    variables: dict[str, Any] = Field(default_factory=dict, description="Variables for this environment")


class EnvironmentConfig(_Model):
    """A long-lived environment (development, staging, production, ...)."""

    cluster_dir: str = Field(description="Cluster directory in the fleet repo, e.g. clusters/development")
    tracking: Tracking = Field(description="How this environment tracks the platform stack")
    terraform: TerraformSettings = Field(description="Cluster module and variables for this environment")
    canary: bool = Field(default=False, description="Tracks main like development (allowed to use a GitRepository)")


class FleetRepoConfig(_Model):
    """Where the fleet repository lives."""

    remote: str = Field(description="Git URL or path of the fleet repository remote")
    default_branch: str = Field(default="main", description="The trunk branch sandboxes branch from")
    ticket_pattern: str = Field(
        default=r"[A-Z][A-Z0-9]+-[0-9]+",
        description="Regular expression a ticket id must match (branch names are <ticket>-<summary>)",
    )
    author_name: str = Field(default="fleet-sandbox", description="Commit author name")
    author_email: str = Field(default="fleet-sandbox@localhost", description="Commit author e-mail")

    @field_validator("ticket_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


class SandboxDefaults(_Model):
    """Defaults for new sandboxes."""

    default_ttl: str = Field(default="72h", description="Time to live of a new sandbox (e.g. 72h, 3d)")
    max_ttl: str = Field(default="30d", description="Longest TTL a sandbox may be given")
    protected_names: list[str] = Field(
        default_factory=list, description="Names never usable for a sandbox besides the environments"
    )
    state_dir: str = Field(
        default=".fleet-sandbox",
        description="Where per-sandbox checkouts, terraform working dirs and simulations live",
    )


class InventoryConfig(_Model):
    """The sandbox inventory database."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<state_dir>/inventory.db (postgresql+psycopg://... for teams)",
    )


class TerraformDriverConfig(_Model):
    """The terraform driver."""

    binary: str = Field(default="terraform", description="terraform or OpenTofu's tofu")
    timeout_seconds: float = Field(default=3600, description="Longest a single terraform command may run")
    lock_timeout: str = Field(default="60s", description="How long to wait for a held state lock")


class SimulatedClusterConfig(_Model):
    """The simulated cluster (stands in for a Kubernetes cluster where none can run)."""

    readiness_delay_seconds: float = Field(default=0.2, description="Simulated time to become Ready")


class ClusterDriverConfig(_Model):
    """How the product talks to clusters."""

    type: Literal["simulated", "kubernetes"] = Field(
        default="simulated", description="simulated (on-disk simulation) or kubernetes (real, via kubeconfig)"
    )
    simulation: SimulatedClusterConfig = Field(default_factory=SimulatedClusterConfig)
    kubeconfig_output: str = Field(
        default="kubeconfig", description="Terraform output holding the sandbox's kubeconfig (kubernetes type)"
    )
    ready_timeout_seconds: float = Field(default=600, description="How long validate waits for Ready")
    teardown_timeout_seconds: float = Field(default=900, description="How long teardown waits per tier")


class GitHostingConfig(_Model):
    """Where pull requests are opened."""

    type: Literal["local", "github"] = Field(
        default="local", description="local (records pull requests in the state dir) or github (REST API)"
    )
    api_url: str = Field(default="https://api.github.com", description="GitHub API base URL")
    repository: str | None = Field(default=None, description="owner/name on the git host")
    token_secret_block: str | None = Field(default=None, description="Prefect Secret block holding the API token")
    token_env: str = Field(default="GITHUB_TOKEN", description="Environment variable holding the token")
    web_url: str | None = Field(default=None, description="Base web URL used for compare links")


class GitDriverConfig(_Model):
    """The git driver."""

    binary: str = Field(default="git", description="git executable")
    timeout_seconds: float = Field(default=300, description="Longest a git command may run")
    credentials_env: str = Field(
        default="FLEET_GIT_TOKEN", description="Environment variable with the token Flux uses to read the repo"
    )
    credentials_secret_block: str | None = Field(
        default=None, description="Prefect Secret block with the token Flux uses to read the repo"
    )


class LoadGeneratorConfig(_Model):
    """The load generator used by performance tests."""

    type: Literal["http", "locust"] = Field(
        default="http", description="http (built-in HTTP load) or locust (headless subprocess)"
    )
    users: int = Field(default=4, ge=1, description="Concurrent simulated users")
    duration_seconds: float = Field(default=2.0, gt=0, description="How long the load runs")
    target_url: str | None = Field(default=None, description="URL to load; default: a local target")


class DriversConfig(_Model):
    """Outside systems."""

    terraform: TerraformDriverConfig = Field(default_factory=TerraformDriverConfig)
    git: GitDriverConfig = Field(default_factory=GitDriverConfig)
    cluster: ClusterDriverConfig = Field(default_factory=ClusterDriverConfig)
    git_hosting: GitHostingConfig = Field(default_factory=GitHostingConfig)
    load_generator: LoadGeneratorConfig = Field(default_factory=LoadGeneratorConfig)


EnvName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]


class ValidationConfig(_Model):
    """What the validate stage checks the sandbox against."""

    flux_version: str | None = Field(
        default=None,
        description="Flux version the clusters run (X.Y), for its API removals; default: the newest Flux known",
    )
    extra_deprecation_data: list[str] = Field(
        default_factory=list,
        description="Extra API deprecation data files (e.g. for cert-manager CRDs), relative to fleet.yaml",
    )


class FleetConfig(_Model):
    """The whole ``fleet.yaml``."""

    fleet_repo: FleetRepoConfig = Field(description="The fleet repository")
    environments: dict[EnvName, EnvironmentConfig] = Field(description="Long-lived environments by name")
    sandbox: SandboxDefaults = Field(default_factory=SandboxDefaults)
    inventory: InventoryConfig = Field(default_factory=InventoryConfig)
    drivers: DriversConfig = Field(default_factory=DriversConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    #: Directory the file was read from; relative paths resolve against it.
    base_dir: Path = Field(default=Path("."), exclude=True, description="Directory of fleet.yaml")

    @model_validator(mode="after")
    def _has_development(self) -> FleetConfig:
        if not self.environments:
            raise ValueError("at least one environment is required")
        return self

    def path(self, value: str | Path) -> Path:
        """Resolve a path from the file against the file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def state_dir(self) -> Path:
        """Directory for per-sandbox state."""
        return self.path(self.sandbox.state_dir)

    @property
    def inventory_url(self) -> str:
        """SQLAlchemy URL of the inventory."""
        return self.inventory.url or f"sqlite:///{self.state_dir / 'inventory.db'}"

    @property
    def remote_url(self) -> str:
        """The fleet remote, with local paths made absolute."""
        remote = self.fleet_repo.remote
        if "://" in remote or re.match(r"^[\w.-]+@[\w.-]+:", remote):
            return remote
        return str(self.path(remote))

    def environment(self, name: str) -> EnvironmentConfig:
        """The named long-lived environment.

        Raises:
            InvalidInputError: No such environment.
        """
        from sandbox.errors import InvalidInputError

        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise InvalidInputError(f"unknown environment {name!r} (known: {known})") from None

    def protected_names(self) -> set[str]:
        """Names a sandbox may never take: every environment and the configured ones."""
        return set(self.environments) | set(self.sandbox.protected_names) | {"flux-system"}


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def load_config(path: str | Path = DEFAULT_CONFIG_PATH) -> FleetConfig:
    """Read and validate ``fleet.yaml``.

    Raises:
        ConfigError: Missing, unreadable, not YAML, or invalid; the message names
            the file, the key and what was expected.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        config = FleetConfig.model_validate({**data, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(
            f"{path}: {_location(first['loc'])}: {first['msg']}"
            + (
                f" (got {first['input']!r})"
                if first["type"] != "missing" and not isinstance(first["input"], dict)
                else ""
            )
        ) from None
    return config
