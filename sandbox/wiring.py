"""Builds drivers from configuration: the one place that chooses implementations."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sandbox.config import FleetConfig
from sandbox.drivers.cluster import ClusterDriver
from sandbox.drivers.git import GitCli
from sandbox.drivers.git_hosting import GitHosting, GitHubHosting, LocalGitHosting, github_web_url
from sandbox.drivers.terraform import PythonTerraformDriver, TerraformDriver, TerraformOutput, public_outputs
from sandbox.errors import ConfigError
from sandbox.hardening import check_credentials_transport
from sandbox.inventory import Inventory
from sandbox.redaction import register_kubeconfig, register_secret


@dataclass
class Drivers:
    """Every outside system a stage may touch."""

    git: GitCli
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
    git = config.drivers.git
    git_cli = GitCli(
        git.binary,
        git.timeout_seconds,
        author_name=config.fleet_repo.author_name,
        author_email=config.fleet_repo.author_email,
    )
    return Drivers(
        git=git_cli,
        terraform=PythonTerraformDriver(binary=tf.binary, timeout=tf.timeout_seconds, lock_timeout=tf.lock_timeout),
        hosting=build_hosting(config, git_cli, github_token=github_token),
    )


def build_hosting(config: FleetConfig, git: GitCli, *, github_token: str | None = None) -> GitHosting:
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


def oci_layouts(config: FleetConfig) -> dict[str, Path]:
    """The OCI image layout standing in for the configured registry, by its URL (empty when none)."""
    registry = config.drivers.registry
    if registry is None or not registry.layout_dir:
        return {}
    return {registry.url: config.path(registry.layout_dir)}
