"""What the simulated source-controller fetches: git refs, and the simulated OCI registry.

Git sources are real: ``git ls-remote`` resolves a GitRepository's ref on its
(local) remote and the commit is exported into
``<simulation_dir>/artifacts/<sha>/`` (once per commit), which is what the
simulated kustomize-controller builds from.

The **simulated OCI registry** serves the fleet repository's release tags: tag
``1.2.3`` (or ``v1.2.3``) of the fleet repository is the platform artifact
``1.2.3``, and its content is a subdirectory (``platform/`` by default) of the
tagged commit -- what ``flux push artifact`` of that directory at that tag
would have published.

Every git command goes through :mod:`sandbox.proc`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sandbox.errors import SandboxError
from sandbox.proc import Command, run, tail


class SourceError(Exception):
    """A source could not be fetched; ``str`` is the message its Ready condition reports."""


@dataclass(frozen=True)
class RemoteRefs:
    """A remote's branches and tags: name -> commit sha (annotated tags peeled)."""

    branches: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class GitTools:
    """How the simulation runs git."""

    binary: str = "git"
    timeout_seconds: float = 60.0


def local_repository(url: str) -> Path | None:
    """The local path a source URL names (``file://`` URL or absolute path), else None.

    The simulated source-controller reaches only repositories on this machine.
    """
    text = url.strip()
    if text.startswith("file://"):
        return Path(unquote(urlsplit(text).path))
    if text.startswith("/"):
        return Path(text)
    return None


def _git(tools: GitTools, cwd: Path, *args: str) -> str:
    command = Command(argv=(tools.binary, *args), cwd=cwd, timeout=tools.timeout_seconds)
    try:
        # Safe to rerun (ls-remote reads; an export starts over in a fresh staging
        # directory), and a failure becomes a SourceError the simulated controller
        # reports and retries at its next poll either way.
        return run(command, timeout_is_retryable=True).stdout
    except SandboxError as exc:
        stderr = getattr(exc, "stderr_tail", "") or str(exc)
        raise SourceError(tail(stderr, 300)) from None


def list_remote(tools: GitTools, repository: Path, workdir: Path) -> RemoteRefs:
    """``git ls-remote`` of a local repository.

    Raises:
        SourceError: The repository does not exist or git failed.
    """
    if not repository.exists():
        raise SourceError(f"repository '{repository}' does not exist")
    output = _git(tools, workdir, "ls-remote", "--heads", "--tags", repository.as_uri())
    branches: dict[str, str] = {}
    tags: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in output.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            branches[ref.removeprefix("refs/heads/")] = sha
        elif ref.startswith("refs/tags/"):
            name = ref.removeprefix("refs/tags/")
            if name.endswith("^{}"):
                peeled[name[:-3]] = sha
            else:
                tags[name] = sha
    tags.update({name: sha for name, sha in peeled.items() if name in tags})
    return RemoteRefs(branches=branches, tags=tags)


def export_commit(tools: GitTools, repository: Path, sha: str, artifacts_dir: Path) -> Path:
    """The tree of commit ``sha`` in ``artifacts_dir/<sha>/`` (exported once; reused after).

    Raises:
        SourceError: git could not fetch the commit.
    """
    destination = artifacts_dir / sha
    if destination.is_dir():
        return destination
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=artifacts_dir))
    try:
        _git(tools, staging, "init", "--quiet")
        _git(tools, staging, "fetch", "--quiet", "--depth", "1", repository.as_uri(), sha)
        _git(tools, staging, "-c", "advice.detachedHead=false", "checkout", "--quiet", "FETCH_HEAD")
        shutil.rmtree(staging / ".git")
        try:
            staging.rename(destination)
        except OSError:
            if not destination.is_dir():  # not another process's export finishing first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return destination


def artifact_digest(*parts: str) -> str:
    """A stable ``sha256:`` digest standing in for an artifact tarball's digest."""
    return "sha256:" + hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
