"""Configuration: ``fleet.yaml`` as pydantic models.

Every field carries a description, so the same models document the file and
render as forms in the Prefect UI. Relative paths in the file are resolved
against the file's own directory by :func:`load_config`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sandbox import bounded, redaction
from sandbox.errors import ConfigError, InvalidInputError
from sandbox.giturls import flux_url_problem, without_userinfo
from sandbox.hardening import check_credentials_transport

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

    @field_validator("range")
    @classmethod
    def _range_parses(cls, value: str | None) -> str | None:
        # A range Flux cannot read would only fail at release time, far from its cause.
        if value is not None:
            from sandbox.versions import parse_constraint

            parse_constraint(value)  # InvalidConstraintError is a ValueError: a config error naming the key
        return value

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
    workspace: str | None = Field(
        default=None,
        description=(
            "Terraform workspace holding this long-lived environment's own state (read by `sandbox align`); "
            "default: the environment's name"
        ),
    )


class EnvironmentConfig(_Model):
    """A long-lived environment (development, staging, production, ...)."""

    cluster_dir: str = Field(description="Cluster directory in the fleet repo, e.g. clusters/development")
    tracking: Tracking = Field(description="How this environment tracks the platform stack")
    terraform: TerraformSettings = Field(description="Cluster module and variables for this environment")
    canary: bool = Field(default=False, description="Tracks main like development (allowed to use a GitRepository)")


class FleetRepoConfig(_Model):
    """Where the fleet repository lives."""

    remote: str = Field(description="Git URL or path of the fleet repository remote (what this tool clones and pushes)")
    flux_url: str | None = Field(
        default=None,
        description=(
            "The URL Flux on the clusters fetches the fleet repository from: an http, https or ssh URL "
            "(ssh://git@host/org/repo.git, not git@host:org/repo.git), rendered into gotk-sync.yaml; default: "
            "`remote` when that is such a URL. With the simulated cluster driver a local path (or file:// URL) is "
            "accepted too, because the simulated source-controller reads the repository from disk"
        ),
    )
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


class CostConfig(_Model):
    """Estimated cluster cost: an hourly rate per scale (node size), for ``sandbox list`` and cleanup reports.

    A sandbox's hourly cost is ``hourly_rates[<size>] * <count>``, with size and
    count taken from its terraform variables (the source environment's, then the
    sandbox's overrides). Estimates only: no cloud bill is read.
    """

    currency: str = Field(default="USD", description="Currency of the rates (shown in reports)")
    hourly_rates: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Cost of one node per hour by node size (the size variable's value), e.g. {small: 0.05}",
    )
    default_hourly_rate: float | None = Field(
        default=None, ge=0, description="Per node and hour for sizes not listed; unset: their cost is unknown"
    )
    size_variable: str = Field(default="node_size", description="Terraform variable holding the node size")
    count_variable: str = Field(
        default="node_count", description="Terraform variable holding the node count (1 when absent)"
    )
    unnoticed_hours: float = Field(
        default=168,
        gt=0,
        description=(
            "Assumed hours a forgotten sandbox would have kept running past its expiry (or past being found, for "
            "orphans) had cleanup not destroyed it; only used for the 'estimated saving' in cleanup reports"
        ),
    )


class CleanupConfig(_Model):
    """The nightly cleanup of expired and orphaned sandboxes."""

    concurrency: int = Field(default=4, ge=1, le=64, description="How many sandboxes are cleaned at the same time")
    grace: str = Field(
        default="2h",
        description=(
            "Records changed more recently than this are left alone while creating or tearing down, and never "
            "reconciled (a run may be working on them), e.g. 2h"
        ),
    )
    delete_orphan_branches: bool = Field(
        default=True, description="Delete sandbox branches no record owns (the deleted tip is kept in the report)"
    )
    propose_directory_removal: bool = Field(
        default=True,
        description="Open a pull request removing sandbox directories found on the default branch without a record",
    )

    @field_validator("grace")
    @classmethod
    def _duration(cls, value: str) -> str:
        from sandbox.naming import parse_duration

        try:
            parse_duration(value)
        except InvalidInputError as exc:
            raise ValueError(str(exc)) from None
        return value


class TerraformDriverConfig(_Model):
    """The terraform driver."""

    binary: str = Field(default="terraform", description="terraform or OpenTofu's tofu")
    timeout_seconds: float = Field(default=3600, description="Longest a single terraform command may run")
    lock_timeout: str = Field(default="60s", description="How long to wait for a held state lock")


class SimulatedClusterConfig(_Model):
    """The simulated cluster (stands in for a Kubernetes cluster where none can run)."""

    readiness_delay_seconds: float = Field(default=0.2, description="Simulated time to become Ready")
    crd_established_delay_seconds: float = Field(
        default=0.5,
        ge=0,
        description="Simulated time a new CustomResourceDefinition takes to become Established (its kind served)",
    )


class ClusterDriverConfig(_Model):
    """How the product talks to clusters."""

    type: Literal["simulated", "kubernetes"] = Field(
        default="simulated", description="simulated (on-disk simulation) or kubernetes (real, via kubeconfig)"
    )
    simulation: SimulatedClusterConfig = Field(default_factory=SimulatedClusterConfig)
    kubeconfig_output: str = Field(
        default="kubeconfig", description="Terraform output holding the sandbox's kubeconfig (kubernetes type)"
    )
    ready_timeout_seconds: float = Field(default=600, gt=0, description="How long validate waits for Ready")
    crd_timeout_seconds: float = Field(
        default=120,
        gt=0,
        description="How long bootstrap waits for Flux's CustomResourceDefinitions to be Established",
    )
    teardown_timeout_seconds: float = Field(default=900, gt=0, description="How long teardown waits per tier")


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
    ssh_key_env: str = Field(
        default="FLEET_GIT_SSH_KEY",
        description="Environment variable with the SSH private key Flux reads an ssh:// fleet repository with",
    )
    ssh_key_secret_block: str | None = Field(
        default=None,
        description="Prefect Secret block with the SSH private key Flux reads an ssh:// fleet repository with",
    )
    known_hosts: str | None = Field(
        default=None,
        description=(
            "The git host's SSH host keys for an ssh:// fleet repository: known_hosts lines, or the path of a "
            "known_hosts file (relative to fleet.yaml)"
        ),
    )


class LocustSettings(_Model):
    """The locust load generator (``drivers.load_generator.locust``)."""

    command: list[str] = Field(
        default_factory=list, description="How to start locust, e.g. [locust]; default: python -m locust"
    )
    startup_timeout_seconds: float = Field(default=60, gt=0, description="Time allowed on top of the run time")


class LoadJobSettings(_Model):
    """The Kubernetes Job load generator (``drivers.load_generator.job``); see docs/load-results.md."""

    image: str | None = Field(default=None, description="Load image; it prints a result line (docs/load-results.md)")
    namespace: str = Field(default="default", description="Namespace the load Job runs in")
    command: list[str] = Field(default_factory=list, description="Container command (default: the image's)")
    args: list[str] = Field(default_factory=list, description="Container args")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables (no secrets)")
    deadline_margin_seconds: float = Field(default=300, gt=0, description="Time allowed on top of the run time")


class LoadGeneratorConfig(_Model):
    """The load generator used by performance tests."""

    type: Literal["http", "locust", "kubernetes-job"] = Field(
        default="http",
        description="http (built-in HTTP load), locust (headless subprocess) or kubernetes-job (a load image)",
    )
    users: int = Field(default=4, ge=1, description="Concurrent simulated users")
    spawn_rate: float | None = Field(default=None, gt=0, description="Users started per second (default: all at once)")
    duration_seconds: float = Field(default=2.0, gt=0, description="How long the load runs")
    target_url: str | None = Field(default=None, description="URL to load; default: a local target")
    locust: LocustSettings = Field(default_factory=LocustSettings)
    job: LoadJobSettings = Field(default_factory=LoadJobSettings)


PerfMetric = Literal["requests_per_second", "p50_ms", "p95_ms", "p99_ms", "error_rate"]


class PerformanceGate(_Model):
    """Fails a run whose metric is worse than the baseline's by more than a percentage."""

    metric: PerfMetric = Field(
        description="requests_per_second (lower is worse) or p50_ms, p95_ms, p99_ms, error_rate (higher is worse)"
    )
    max_worse_percent: float = Field(ge=0, description="Largest change for the worse tolerated, in % of the baseline")


class PerformanceScenario(_Model):
    """A named load scenario; unset values come from drivers.load_generator."""

    users: int | None = Field(default=None, ge=1, description="Concurrent simulated users")
    spawn_rate: float | None = Field(default=None, gt=0, description="Users started per second")
    duration_seconds: float | None = Field(default=None, gt=0, description="How long the load runs")
    target_url: str | None = Field(
        default=None, description="URL to load (unset: target_service/target_ingress; simulated: the stand-in)"
    )
    target_service: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[0-9]{1,5})?$",
        description="Real cluster, no target_url: the sandbox's Service to load, namespace/name[:port]",
    )
    target_ingress: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Real cluster, no target_url: the sandbox's Ingress to load (its load balancer), namespace/name",
    )
    path: str = Field(default="/", description="Path requested on the target")
    locustfile: str | None = Field(default=None, description="locust only: the scenario's locustfile (path)")


class PerformanceConfig(_Model):
    """Performance-test sandboxes: scenarios, gates against the baseline, reports."""

    default_scenario: str = Field(default="smoke", description="Scenario run when none is named")
    scenarios: dict[str, PerformanceScenario] = Field(
        default_factory=lambda: {"smoke": PerformanceScenario()}, description="Load scenarios by name"
    )
    gates: list[PerformanceGate] = Field(
        default_factory=lambda: [
            PerformanceGate(metric="p95_ms", max_worse_percent=10),
            PerformanceGate(metric="requests_per_second", max_worse_percent=10),
        ],
        description="Pass/fail gates against the baseline",
    )
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Highest error rate (0..1) that passes")
    local_target_delay_ms: float = Field(
        default=20, ge=0, description="Service time of the local stand-in target (simulated clusters have no ingress)"
    )
    stand_in_on_real_clusters: bool = Field(
        default=False, description="Real cluster, no target named: load the local stand-in (said) instead of refusing"
    )
    reports_dir: str = Field(default="perf-reports", description="Charts and load files, relative to the state dir")

    @model_validator(mode="after")
    def _default_is_known(self) -> PerformanceConfig:
        if self.default_scenario not in self.scenarios:
            raise ValueError(f"default_scenario {self.default_scenario!r} is not in scenarios")
        return self


# Distribution spec: registry host[:port] (or [IPv6]:port) and repository path components.
_REGISTRY_HOST_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?|\[[0-9A-Fa-f:]+\](?::[0-9]{1,5})?"
)
_REPOSITORY_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")


def split_registry_url(value: str) -> tuple[str, str]:
    """``(host[:port], repository)`` of ``oci://host[:port]/path`` (``https://``, ``http://`` or none too).

    Raises:
        ValueError: No host, or no valid repository path.
    """
    text = value.strip()
    for scheme in ("oci://", "https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    host, _, repository = text.partition("/")
    repository = repository.strip("/")
    if not host or not _REGISTRY_HOST_RE.fullmatch(host):
        raise ValueError(f"{value!r} has no registry host: use oci://host[:port]/path")
    if not repository or not _REPOSITORY_RE.fullmatch(repository):
        raise ValueError(f"{value!r} has no valid repository path (lowercase a-z, 0-9, . _ - and /)")
    return host, repository


class RegistryConfig(_Model):
    """The OCI registry the platform stack's Flux artifacts are published to (``drivers.registry``)."""

    url: str = Field(
        description="OCI repository of the platform artifact, as an OCIRepository's .spec.url: oci://host[:port]/path"
    )
    insecure: bool = Field(
        default=False, description="Plain HTTP (a local registry), like OCIRepository .spec.insecure"
    )
    auth: Literal["token", "basic"] = Field(
        default="token", description="token (Docker token auth, most registries) or basic (htpasswd registries)"
    )
    username_env: str = Field(default="FLEET_REGISTRY_USERNAME", description="Environment variable with the username")
    password_env: str = Field(
        default="FLEET_REGISTRY_PASSWORD", description="Environment variable with the password or token"
    )
    password_secret_block: str | None = Field(
        default=None, description="Prefect Secret block with the password or token (wins over password_env)"
    )
    timeout_seconds: float = Field(default=60, gt=0, description="Longest a single registry request may take")
    push_with: Literal["auto", "oras", "flux"] = Field(
        default="auto",
        description="auto (`flux push artifact` when the flux CLI is on PATH, else oras), oras (built in) or flux",
    )
    flux_binary: str = Field(default="flux", description="The flux CLI, for push_with auto or flux")
    layout_dir: str | None = Field(
        default=None,
        description=(
            "An OCI image layout directory standing in for the registry at `url` (relative to fleet.yaml): "
            "releases are published into it, and simulated clusters' OCIRepositories with this url read it. "
            "The demo's: no registry server needed"
        ),
    )

    @field_validator("url")
    @classmethod
    def _oci_url(cls, value: str) -> str:
        host, repository = split_registry_url(value)
        return f"oci://{host}/{repository}"

    @property
    def host(self) -> str:
        """``host[:port]`` of the registry."""
        return split_registry_url(self.url)[0]

    @property
    def repository(self) -> str:
        """The repository path inside the registry, e.g. ``fleet/platform``."""
        return split_registry_url(self.url)[1]


class DriversConfig(_Model):
    """Outside systems."""

    terraform: TerraformDriverConfig = Field(default_factory=TerraformDriverConfig)
    git: GitDriverConfig = Field(default_factory=GitDriverConfig)
    cluster: ClusterDriverConfig = Field(default_factory=ClusterDriverConfig)
    git_hosting: GitHostingConfig = Field(default_factory=GitHostingConfig)
    load_generator: LoadGeneratorConfig = Field(default_factory=LoadGeneratorConfig)
    registry: RegistryConfig | None = Field(
        default=None,
        description="Where releases are published; default: the URL of the clusters' platform OCIRepository",
    )


#: pydantic checks ``pattern`` with Rust's regex engine, where ``$`` is the end of the text
#: (``dev\n`` is refused): these ``$`` are exact, unlike Python's.
EnvName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]


class ApplicationStack(_Model):
    """An application team's stack, deployed onto platform sandboxes by the validate stage.

    The seed: before a platform change reaches the teams, deploy their stacks on
    the platform sandbox and confirm they converge; a stack that does not is a
    ticket for its team. The stack is applied to the sandbox's cluster only (a
    GitRepository and a Kustomization ``app-<name>`` in ``flux-system``), never
    committed to the sandbox branch, so promotion never carries it.
    """

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]{0,57}[a-z0-9])?$",
        description="Stack name (a DNS label); its Flux objects are flux-system/app-<name>",
    )
    url: str | None = Field(
        default=None,
        description="Git URL of the stack's repository (a local path resolves against fleet.yaml); "
        "default: the fleet repository",
    )
    branch: str = Field(default="main", description="Branch of that repository to deploy")
    tag: str | None = Field(default=None, description="Tag to deploy instead of the branch")
    path: str = Field(description="Directory of the stack's manifests in that repository, e.g. ./deploy")
    target_namespace: str | None = Field(
        default=None, description="Namespace for the stack's namespaced objects that set none"
    )
    credentials_secret_block: str | None = Field(
        default=None,
        description="Prefect Secret block with a token that reads the repository; validate writes it into "
        "the sandbox as Secret flux-system/app-<name>-auth (the fleet repository needs none: the sandbox's own "
        "flux-system secret reads it)",
    )
    credentials_env: str | None = Field(
        default=None, description="Environment variable with that token, when no Secret block is set"
    )

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts:
            raise ValueError("must be a path inside the repository (relative, without '..')")
        return value


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
    application_stacks: list[ApplicationStack] = Field(
        default_factory=list,
        description="Application stacks to deploy onto every platform sandbox and wait for (none by default)",
    )
    max_file_bytes: int = Field(
        default=bounded.DEFAULT_MAX_FILE_BYTES,
        ge=1024,
        description="Largest file (bytes) the validate stage reads from the fleet repository; larger files, "
        "and names that are not regular files (FIFOs, devices), are skipped and listed with the reason",
    )

    @field_validator("application_stacks")
    @classmethod
    def _unique_stacks(cls, value: list[ApplicationStack]) -> list[ApplicationStack]:
        names = [stack.name for stack in value]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"application stack names must be unique: {', '.join(repeated)}")
        return value


class FleetConfig(_Model):
    """The whole ``fleet.yaml``."""

    fleet_repo: FleetRepoConfig = Field(description="The fleet repository")
    environments: dict[EnvName, EnvironmentConfig] = Field(description="Long-lived environments by name")
    sandbox: SandboxDefaults = Field(default_factory=SandboxDefaults)
    inventory: InventoryConfig = Field(default_factory=InventoryConfig)
    drivers: DriversConfig = Field(default_factory=DriversConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    performance: PerformanceConfig = Field(default_factory=PerformanceConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)

    #: Directory the file was read from; relative paths resolve against it.
    base_dir: Path = Field(default=Path("."), exclude=True, description="Directory of fleet.yaml")

    @model_validator(mode="after")
    def _has_development(self) -> FleetConfig:
        if not self.environments:
            raise ValueError("at least one environment is required")
        return self

    @model_validator(mode="after")
    def _flux_can_fetch(self) -> FleetConfig:
        # A URL Flux's GitRepository CRD refuses would only fail at bootstrap or
        # validate, on a cluster already paid for: refuse it when the file is read.
        if self.drivers.cluster.type != "kubernetes":
            return self
        given = self.fleet_repo.flux_url
        field = "fleet_repo.flux_url" if given else "fleet_repo.remote (used as fleet_repo.flux_url when unset)"
        problem = flux_url_problem(given or self.fleet_repo.remote)
        if problem:
            advice = "" if given else "; set fleet_repo.flux_url to the URL Flux fetches the repository from"
            raise ValueError(f"{field}: {problem}{advice}")
        if self.flux_url.startswith("ssh://"):
            if not self.drivers.git.known_hosts:
                raise ValueError(
                    f"drivers.git.known_hosts: required for the ssh fleet URL {self.flux_url!r} "
                    "(Flux verifies the git host's key against it)"
                )
            try:
                self.known_hosts()
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        for index, stack in enumerate(self.validation.application_stacks):
            try:
                self.checked_stack_url(index, stack)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
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
        return self.git_url(self.fleet_repo.remote)

    @property
    def fleet_id(self) -> str:
        """This fleet, as 12 hex digits: a hash of its remote and inventory (user names and passwords left out).

        A sandbox is its name within a fleet: its lock and cache keys are scoped by this id, so
        two fleets (or workdirs) on one machine sharing a Prefect server do not block or reuse
        each other's; workers of one team (same remote, same inventory) get the same id.
        """
        identity = f"{without_userinfo(self.remote_url)}\n{without_userinfo(self.inventory_url)}"
        return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]

    def git_url(self, value: str) -> str:
        """A git URL from the file: URLs and scp-style addresses as given, local paths made absolute."""
        if "://" in value or re.match(r"^[\w.-]+@[\w.-]+:", value):
            return value
        return str(self.path(value))

    @property
    def flux_url(self) -> str:
        """The URL Flux fetches the fleet repository from: ``fleet_repo.flux_url``, else the remote."""
        return self.git_url(self.fleet_repo.flux_url) if self.fleet_repo.flux_url else self.remote_url

    def is_fleet_url(self, url: str) -> bool:
        """Whether ``url`` names the fleet repository (its remote or its Flux URL)."""
        return url in self.fleet_urls

    def stack_url(self, stack: ApplicationStack) -> str:
        """Where Flux fetches an application stack's repository from (the fleet's Flux URL by default)."""
        url = self.git_url(stack.url) if stack.url else self.flux_url
        # A stack kept in the fleet repository named by its remote is fetched like the fleet.
        return self.flux_url if url == self.remote_url else url

    @property
    def fleet_urls(self) -> set[str]:
        """Every URL naming the fleet repository (remote and Flux URL)."""
        return {self.remote_url, self.flux_url}

    def checked_flux_url(self, url: str, field: str) -> str:
        """``url`` when Flux on this configuration's clusters can fetch from it.

        Real clusters (``drivers.cluster.type: kubernetes``) need an http, https
        or ssh URL, as Flux's GitRepository CRD requires; the simulated
        source-controller also reads local paths and ``file://`` URLs.

        Raises:
            ConfigError: Naming ``field`` and the problem (the ssh:// form for an scp-style address).
        """
        if self.drivers.cluster.type == "kubernetes" and (problem := flux_url_problem(url)):
            raise ConfigError(f"{field}: {problem}")
        return url

    def checked_stack_url(self, index: int, stack: ApplicationStack) -> str:
        """Where Flux fetches ``stack`` from, when Flux on this configuration's clusters can fetch it.

        Besides :meth:`checked_flux_url`, an ``ssh://`` stack on a real cluster
        must be the fleet repository and come without a token: Flux reads ssh
        with a key, and the sandbox holds one only for the fleet (its
        ``flux-system`` Secret); a token authenticates over https.

        Args:
            index: The stack's position in ``validation.application_stacks``.
            stack: The stack.

        Raises:
            ConfigError: Naming the stack's key and the problem.
        """
        url = self.stack_url(stack)
        field = f"validation.application_stacks.{index}.url ({stack.name})" if stack.url else "fleet_repo.flux_url"
        self.checked_flux_url(url, field)
        if self.drivers.cluster.type != "kubernetes" or not url.startswith("ssh://"):
            return url
        where = f"validation.application_stacks.{index} ({stack.name})"
        if stack.credentials_secret_block or stack.credentials_env:
            raise ConfigError(
                f"{where}: a token authenticates over https only, and Flux reads {url!r} over ssh with a key; "
                "give the repository's https:// URL"
            )
        if url != self.flux_url:
            raise ConfigError(
                f"{where}: the sandbox holds an ssh key for the fleet repository only, not for {url!r}; give the "
                "repository's https:// URL (with credentials_secret_block or credentials_env if it is private)"
            )
        return url

    def known_hosts(self) -> str | None:
        """``drivers.git.known_hosts`` as known_hosts lines (a file's content when it names a file).

        Raises:
            ConfigError: It names neither a readable file nor known_hosts lines.
        """
        value = self.drivers.git.known_hosts
        if not value or not value.strip():
            return None
        text = value.strip()
        # A known_hosts line is "<hosts> <key type> <key>": a value without
        # whitespace can only be a file name.
        if len(text.split()) < 3:
            path = self.path(text)
            try:
                return path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"drivers.git.known_hosts: {path} cannot be read ({exc.strerror}); "
                    "give known_hosts lines or the path of a known_hosts file"
                ) from None
        return text + "\n"

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


def secret_variables(config: FleetConfig) -> list[str]:
    """The environment variables a configuration reads secrets from (whether they are set or not).

    The git host's token, Flux's git token and SSH key, the registry's password,
    and each application stack's token.
    """
    registry = config.drivers.registry
    names = [
        config.drivers.git_hosting.token_env,
        config.drivers.git.credentials_env,
        config.drivers.git.ssh_key_env,
        registry.password_env if registry else str(RegistryConfig.model_fields["password_env"].default),
    ]
    names += [stack.credentials_env for stack in config.validation.application_stacks if stack.credentials_env]
    return names


def register_configured_secrets(config: FleetConfig, environ: Mapping[str, str] | None = None) -> None:
    """Register (:mod:`sandbox.redaction`) every secret a configuration names, as soon as it is read.

    The values of :func:`secret_variables` and the credentials embedded in the
    configuration's URLs. Registered even when this process never uses them:
    every external command inherits the environment, and a tool that echoes it
    (or a host that echoes a header) must not put them into an error.
    """
    env = os.environ if environ is None else environ
    for name in secret_variables(config):
        redaction.register_secret(env.get(name))
    registry = config.drivers.registry
    defaults = RegistryConfig.model_fields
    username_env = registry.username_env if registry else str(defaults["username_env"].default)
    password_env = registry.password_env if registry else str(defaults["password_env"].default)
    # The registry password also travels as HTTP basic auth: base64 of user:password.
    redaction.register_basic_auth(env.get(username_env), env.get(password_env))
    urls = [config.fleet_repo.remote, config.fleet_repo.flux_url, config.inventory.url]
    urls += [config.drivers.git_hosting.api_url, config.drivers.load_generator.target_url]
    urls += [stack.url for stack in config.validation.application_stacks]
    urls += [scenario.target_url for scenario in config.performance.scenarios.values()]
    for url in urls:
        redaction.register_url_credentials(url)


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
        # Bounded: --config /dev/zero, a FIFO or a huge file is refused, not read without end.
        text = bounded.read_bounded(path, bounded.MAX_CONFIG_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except bounded.FileRefusedError as exc:
        raise ConfigError(f"{path}: {exc.reason.removesuffix('; not read')}; refused") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        # Duplicate keys are errors and alias expansion is capped (a "billion laughs" bomb).
        data = bounded.load_yaml_document(text)
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
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
        if not first["loc"] and first["type"] == "value_error":
            # A check across sections: its message starts with the key it is about.
            raise ConfigError(f"{path}: {str(first['msg']).removeprefix('Value error, ')}") from None
        raise ConfigError(
            f"{path}: {_location(first['loc'])}: {first['msg']}"
            + (
                # A URL given may carry credentials: never repeat them.
                f" (got {redaction.redact_url(repr(first['input']))})"
                if first["type"] != "missing" and not isinstance(first["input"], dict)
                else ""
            )
        ) from None
    register_configured_secrets(config)
    remote = urlsplit(config.fleet_repo.remote) if "://" in config.fleet_repo.remote else None
    if remote is not None and (remote.password or (remote.username and remote.scheme == "http")):
        try:
            check_credentials_transport(config.fleet_repo.remote, "fleet_repo.remote")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return config
