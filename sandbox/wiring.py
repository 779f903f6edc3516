"""Builds drivers from configuration: the one place that chooses implementations.

Git (:func:`build_git`), terraform and git hosting (:func:`build_drivers`), the cluster
(:func:`connect_cluster`), the OCI registry (:func:`build_registry`) and the load
generators (:func:`build_load_generator`, :func:`build_job_load_generator`) are
constructed here and nowhere else; the core is typed with the drivers' Protocols.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sandbox.config import FleetConfig
from sandbox.drivers.cluster import ClusterDriver
from sandbox.drivers.git import GitCli, GitDriver
from sandbox.drivers.git_hosting import GitHosting, GitHubHosting, LocalGitHosting, github_web_url
from sandbox.drivers.load import HttpLoadGenerator, LoadGenerator
from sandbox.drivers.registry import FluxCliRegistry, OciRegistry, OrasRegistry, RegistryConfig, RegistryCredentials
from sandbox.drivers.terraform import PythonTerraformDriver, TerraformDriver, TerraformOutput, public_outputs
from sandbox.errors import ConfigError
from sandbox.hardening import check_credentials_transport
from sandbox.inventory import Inventory
from sandbox.perf.scenario import ScenarioSettings
from sandbox.progress import Progress
from sandbox.redaction import register_kubeconfig, register_secret


@dataclass
class Drivers:
    """Every outside system a stage may touch."""

    git: GitDriver
    terraform: TerraformDriver
    hosting: GitHosting
    secrets: dict[str, str] = field(default_factory=dict)


def sandbox_state_dir(config: FleetConfig, name: str) -> Path:
    """``<state_dir>/sandboxes/<name>``: checkout, terraform working dir, simulation."""
    return config.state_dir / "sandboxes" / name


def build_drivers(config: FleetConfig, *, github_token: str | None = None) -> Drivers:
    """The drivers the configuration asks for.

    Args:
        config: The fleet configuration.
        github_token: Token for the GitHub hosting driver (from a Secret block or
            the environment; resolved by the caller so the core never imports Prefect).
    """
    tf = config.drivers.terraform
    git = build_git(config)
    return Drivers(
        git=git,
        terraform=PythonTerraformDriver(binary=tf.binary, timeout=tf.timeout_seconds, lock_timeout=tf.lock_timeout),
        hosting=build_hosting(config, git, github_token=github_token),
    )


def build_git(config: FleetConfig | None = None) -> GitDriver:
    """The git driver: the configured executable, timeout and commit author.

    Args:
        config: The fleet configuration; without one (``sandbox clone`` and ``sandbox check``
            on a bare checkout, the demo's setup) ``git`` on the PATH with its defaults.
    """
    if config is None:
        return GitCli()
    git = config.drivers.git
    return GitCli(
        git.binary,
        git.timeout_seconds,
        author_name=config.fleet_repo.author_name,
        author_email=config.fleet_repo.author_email,
    )


def build_hosting(config: FleetConfig, git: GitDriver, *, github_token: str | None = None) -> GitHosting:
    """The git-hosting driver the configuration asks for.

    ``github`` with a token (given, or in ``token_env``) opens pull requests
    through the API. Without one nobody can open it for us: the pull request is
    recorded locally and its compare URL is what a person opens. ``local``
    records pull requests in the state directory and reads merges from a local
    fleet remote.

    Raises:
        ConfigError: ``github`` without ``repository``, or a token that would be sent
            over plain HTTP to another machine (``api_url`` ``http://``).
    """
    hosting_cfg = config.drivers.git_hosting
    directory = config.state_dir / "pull-requests"
    url = config.remote_url
    remote = Path(unquote(urlsplit(url).path)) if url.startswith("file://") else None if "://" in url else Path(url)
    if hosting_cfg.type == "github":
        if not hosting_cfg.repository:
            raise ConfigError("drivers.git_hosting.repository is required for type github")
        token = github_token or os.environ.get(hosting_cfg.token_env)
        if token:
            register_secret(token)
            check_credentials_transport(hosting_cfg.api_url, "drivers.git_hosting.api_url")
            return GitHubHosting(hosting_cfg.api_url, hosting_cfg.repository, token)
        web_url = hosting_cfg.web_url or github_web_url(hosting_cfg.api_url, hosting_cfg.repository)
        return LocalGitHosting(directory, web_url=web_url, manual=True, remote=remote, git=git)
    return LocalGitHosting(directory, web_url=hosting_cfg.web_url, remote=remote, git=git)


def open_inventory(config: FleetConfig) -> Inventory:
    """The inventory the configuration names."""
    return Inventory(config.inventory_url)


def cluster_outputs(config: FleetConfig, outputs: Mapping[str, TerraformOutput]) -> dict[str, Any]:
    """The outputs of a cluster module that may be shown and stored (no secret, no kubeconfig).

    Sensitive outputs are dropped, and so is the kubeconfig output whatever its
    marking: a module that forgot ``sensitive = true`` must not put cluster
    credentials into the inventory, a log or an artifact.
    """
    hidden = config.drivers.cluster.kubeconfig_output
    return {name: value for name, value in public_outputs(outputs).items() if name != hidden}


def needs_cluster_credentials(config: FleetConfig) -> bool:
    """Whether connecting needs the module's sensitive outputs (the real driver's kubeconfig)."""
    return config.drivers.cluster.type == "kubernetes"


def check_cluster_module_outputs(config: FleetConfig, declared: Mapping[str, bool]) -> None:
    """Refuse a cluster module whose outputs cannot connect the configured driver, before it is applied.

    Args:
        config: The fleet configuration.
        declared: The module's outputs by name: whether each is sensitive (from its plan).

    Raises:
        ConfigError: The kubernetes driver is configured and the module declares no
            kubeconfig output, or declares it without ``sensitive = true``.
    """
    if not needs_cluster_credentials(config):
        return
    kubeconfig = config.drivers.cluster.kubeconfig_output
    if kubeconfig not in declared:
        raise ConfigError(_missing_kubeconfig(kubeconfig))
    if not declared[kubeconfig]:
        raise ConfigError(_unmarked_kubeconfig(kubeconfig))


def _missing_kubeconfig(name: str) -> str:
    return (
        f"the cluster module has no {name!r} output (drivers.cluster.kubeconfig_output); "
        "the kubernetes cluster driver connects with the kubeconfig the module outputs"
    )


def _unmarked_kubeconfig(name: str) -> str:
    return f"terraform output {name!r} holds cluster credentials: mark it sensitive = true in the cluster module"


def kubeconfig_from_outputs(config: FleetConfig, outputs: Mapping[str, TerraformOutput]) -> str:
    """The kubeconfig text a cluster module outputs (``drivers.cluster.kubeconfig_output``).

    Raises:
        ConfigError: The module has no such output, it is empty, or it is not marked
            ``sensitive`` (a credential printed by every ``terraform output``). Permanent:
            retrying cannot make a module grow an output.
    """
    name = config.drivers.cluster.kubeconfig_output
    output = outputs.get(name)
    if output is None or not output.value:
        raise ConfigError(_missing_kubeconfig(name))
    # Its keys, certificates and tokens are secrets wherever they show up, alone or together.
    register_kubeconfig(str(output.value))
    if not output.sensitive:
        raise ConfigError(_unmarked_kubeconfig(name))
    return str(output.value)


def connect_cluster(config: FleetConfig, outputs: Mapping[str, TerraformOutput]) -> ClusterDriver:
    """A driver for the cluster a cluster module's terraform ``outputs`` describe.

    The one way every path (sandbox stages, cleanup, long-lived environments)
    connects to a cluster: the simulated driver from the ``cluster_endpoint``
    output, the real driver from the sensitive kubeconfig output, read in memory
    and never logged or written to disk.

    Args:
        config: The fleet configuration.
        outputs: Every output of the module's state, sensitive ones included.

    Raises:
        ConfigError: The outputs cannot describe a cluster of the configured type
            (see :func:`kubeconfig_from_outputs`); never retried.
        ClusterUnreachableError: Retryable trouble reaching the cluster.
    """
    cluster_cfg = config.drivers.cluster
    public = public_outputs(outputs)
    if cluster_cfg.type == "simulated":
        from sandbox.drivers.simulated_cluster import SimulatedCluster

        endpoint = str(public.get("cluster_endpoint") or "")
        if not endpoint.startswith("simulated://"):
            raise ConfigError(
                f"the cluster module's cluster_endpoint output is {endpoint!r}, not a simulated:// endpoint "
                "(drivers.cluster.type is simulated)"
            )
        return SimulatedCluster(
            Path(endpoint.removeprefix("simulated://")),
            kubernetes_version=str(public.get("kubernetes_version") or "1.31"),
            readiness_delay_seconds=cluster_cfg.simulation.readiness_delay_seconds,
            crd_established_delay_seconds=cluster_cfg.simulation.crd_established_delay_seconds,
            oci_git_remote=config.remote_url,
            oci_layouts=oci_layouts(config),
        )
    from sandbox.drivers.kubernetes_cluster import KubernetesClusterDriver

    # Built from the text in memory: the kubeconfig (a secret) never touches disk.
    return KubernetesClusterDriver.from_kubeconfig_text(kubeconfig_from_outputs(config, outputs))


def build_load_generator(config: FleetConfig, settings: ScenarioSettings, *, workdir: Path) -> LoadGenerator:
    """The host-side load generator a scenario asks for (``http`` or ``locust``).

    Raises:
        ConfigError: ``kubernetes-job`` (it needs the sandbox cluster: :func:`build_job_load_generator`).
    """
    if settings.generator == "http":
        return HttpLoadGenerator()
    if settings.generator == "locust":
        from sandbox.drivers.locust_load import LocustLoadGenerator

        locust = config.drivers.load_generator.locust
        return LocustLoadGenerator(
            locust.command or None,
            locustfile=Path(settings.locustfile) if settings.locustfile else None,
            workdir=workdir,
            startup_timeout_seconds=locust.startup_timeout_seconds,
        )
    raise ConfigError("the kubernetes-job load generator runs in the sandbox cluster; build it with the cluster")


def build_job_load_generator(
    config: FleetConfig, cluster: ClusterDriver, *, kubeconfig: str | None, progress: Progress | None = None
) -> LoadGenerator:
    """The Kubernetes Job load generator for a sandbox cluster.

    Raises:
        ConfigError: The cluster is simulated (it runs no pods) or no image is configured.
        ConfigError: No kubeconfig for the cluster either.
    """
    if config.drivers.cluster.type == "simulated":
        raise ConfigError(
            "the kubernetes-job load generator needs a real cluster (the simulated cluster runs no pods); "
            "use drivers.load_generator.type http or locust"
        )
    job = config.drivers.load_generator.job
    if not job.image:
        raise ConfigError("drivers.load_generator.job.image is required for the kubernetes-job load generator")
    if not kubeconfig:
        raise ConfigError("no kubeconfig for the sandbox cluster: cannot read the load job's log")
    from sandbox.drivers.job_load import KubernetesJobLoadGenerator, KubernetesPodLogs

    return KubernetesJobLoadGenerator(
        cluster,
        KubernetesPodLogs.from_kubeconfig_text(kubeconfig),
        image=job.image,
        namespace=job.namespace,
        command=job.command,
        args=job.args,
        env=job.env,
        deadline_margin_seconds=job.deadline_margin_seconds,
        progress=progress,
    )


def build_registry(
    settings: RegistryConfig,
    credentials: RegistryCredentials | None = None,
    *,
    progress: Progress | None = None,
) -> OciRegistry:
    """The registry driver ``settings`` asks for.

    ``layout_dir`` set: an OCI image layout directory (:mod:`sandbox.drivers.oci_layout`).
    Else ``push_with: auto`` pushes with ``flux push artifact`` when the flux CLI is on PATH
    and with oras otherwise; ``push_with: flux`` asks for flux but falls back to oras
    (and ``progress`` hears why) when the CLI is missing; ``oras`` always uses oras.
    """
    if settings.layout_dir:
        from sandbox.drivers.oci_layout import OciLayoutRegistry

        return OciLayoutRegistry(settings.url, Path(settings.layout_dir))
    if settings.push_with != "oras":
        if shutil.which(settings.flux_binary):
            return FluxCliRegistry(settings, credentials)
        if settings.push_with == "flux" and progress is not None:
            progress(f"{settings.flux_binary} is not on PATH: pushing with oras instead")
    return OrasRegistry(settings, credentials)


def oci_layouts(config: FleetConfig) -> dict[str, Path]:
    """The OCI image layout standing in for the configured registry, by its URL (empty when none)."""
    registry = config.drivers.registry
    if registry is None or not registry.layout_dir:
        return {}
    return {registry.url: config.path(registry.layout_dir)}
