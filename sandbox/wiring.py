"""Builds drivers from configuration: the one place that chooses implementations."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sandbox.config import FleetConfig
from sandbox.drivers.cluster import ClusterDriver
from sandbox.drivers.git import GitCli
from sandbox.drivers.git_hosting import GitHosting, GitHubHosting, LocalGitHosting, github_web_url
from sandbox.drivers.terraform import PythonTerraformDriver, TerraformDriver
from sandbox.errors import ClusterUnreachableError, ConfigError
from sandbox.inventory import Inventory


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
            return GitHubHosting(hosting_cfg.api_url, hosting_cfg.repository, token)
        web_url = hosting_cfg.web_url or github_web_url(hosting_cfg.api_url, hosting_cfg.repository)
        return LocalGitHosting(directory, web_url=web_url, manual=True, remote=remote, git=git)
    return LocalGitHosting(directory, web_url=hosting_cfg.web_url, remote=remote, git=git)


def open_inventory(config: FleetConfig) -> Inventory:
    """The inventory the configuration names."""
    return Inventory(config.inventory_url)


def connect_cluster(config: FleetConfig, outputs: dict[str, Any], kubeconfig: str | None = None) -> ClusterDriver:
    """A driver for the sandbox cluster described by terraform ``outputs``.

    Args:
        config: The fleet configuration.
        outputs: Non-sensitive terraform outputs (``cluster_endpoint``, ``kubernetes_version``).
        kubeconfig: The kubeconfig text (sensitive) for the real driver.
    """
    cluster_cfg = config.drivers.cluster
    endpoint = str(outputs.get("cluster_endpoint") or "")
    if cluster_cfg.type == "simulated":
        from sandbox.drivers.simulated_cluster import SimulatedCluster

        if not endpoint.startswith("simulated://"):
            raise ClusterUnreachableError(f"no simulated cluster endpoint in terraform outputs ({endpoint!r})")
        return SimulatedCluster(
            Path(endpoint.removeprefix("simulated://")),
            kubernetes_version=str(outputs.get("kubernetes_version") or "1.31"),
            readiness_delay_seconds=cluster_cfg.simulation.readiness_delay_seconds,
            crd_established_delay_seconds=cluster_cfg.simulation.crd_established_delay_seconds,
            oci_git_remote=config.remote_url,
        )
    from sandbox.drivers.kubernetes_cluster import KubernetesClusterDriver

    if not kubeconfig:
        raise ClusterUnreachableError("no kubeconfig for the sandbox cluster in terraform outputs")
    # Built from the text in memory: the kubeconfig (a secret) never touches disk.
    return KubernetesClusterDriver.from_kubeconfig_text(kubeconfig)
