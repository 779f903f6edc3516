"""What every release step works with: the drivers and a fresh checkout of the fleet remote."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import FleetConfig
from sandbox.drivers.git import GitDriver
from sandbox.drivers.git_hosting import GitHosting
from sandbox.drivers.registry import OciRegistry, RegistryConfig
from sandbox.progress import Progress, quiet
from sandbox.release.errors import ReleaseError
from sandbox.release.settings import discover_registry, registry_credentials
from sandbox.wiring import build_drivers, build_registry


@dataclass
class ReleaseContext:
    """What every release step works with.

    Attributes:
        config: The fleet configuration.
        git: The git driver.
        registry: The OCI repository of the platform artifacts.
        hosting: Opens pull requests (needed by the proposal steps only).
        progress: Receives one-line progress messages.
        workdir: Where temporary checkouts go (default ``<state_dir>/release``).
    """

    config: FleetConfig
    git: GitDriver
    registry: OciRegistry
    hosting: GitHosting | None = None
    progress: Progress = quiet
    workdir: Path | None = None

    @property
    def remote(self) -> str:
        """The fleet remote."""
        return self.config.remote_url

    @property
    def default_branch(self) -> str:
        """The branch releases are cut from."""
        return self.config.fleet_repo.default_branch

    @contextmanager
    def checkout(self) -> Iterator[Path]:
        """A fresh clone of the fleet remote on the default branch, removed afterwards."""
        root = self.workdir or self.config.state_dir / "release"
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="checkout-", dir=root) as tmp:
            repo = Path(tmp) / "repo"
            self.git.clone(self.remote, repo)
            self.git.checkout(repo, self.default_branch)
            yield repo

    def head(self, repo: Path) -> str:
        """The commit checked out in ``repo`` (the default branch's head in a fresh :meth:`checkout`).

        Raises:
            ReleaseError: The branch has no commit.
        """
        commit = self.git.rev_parse(repo, "HEAD")
        if commit is None:
            raise ReleaseError(f"{self.default_branch} of {self.remote} has no commit")
        return commit


def build_release_context(
    config: FleetConfig,
    *,
    registry: RegistryConfig | None = None,
    registry_password: str | None = None,
    github_token: str | None = None,
    progress: Progress = quiet,
) -> ReleaseContext:
    """Drivers for the release steps, from the configuration.

    Args:
        config: The fleet configuration.
        registry: Registry settings (default: :func:`discover_registry`).
        registry_password: The registry password from a Secret block (the environment
            variables are read here otherwise); resolved by the caller so the core never
            imports Prefect.
        github_token: Token for GitHub hosting.
        progress: Receives progress lines.
    """
    drivers = build_drivers(config, github_token=github_token)
    settings = registry or discover_registry(config, drivers.git)
    credentials = registry_credentials(settings, password=registry_password)
    return ReleaseContext(
        config=config,
        git=drivers.git,
        registry=build_registry(settings, credentials, progress=progress),
        hosting=drivers.hosting,
        progress=progress,
    )
