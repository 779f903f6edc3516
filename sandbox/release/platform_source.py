"""Reading the cluster files as Flux reads them: the platform stack's source in each cluster directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from ruamel.yaml.comments import CommentedMap

from sandbox import paths
from sandbox.config import EnvironmentConfig
from sandbox.yamledit import iter_objects, load_documents

#: The file in each cluster directory that declares the platform source.
PLATFORM_FILE = "platform.yaml"
#: The name of the Flux source object for the platform stack.
PLATFORM_SOURCE = "platform"

_SOURCE_KINDS = ("OCIRepository", "GitRepository")
_SOURCE_API_GROUP = "source.toolkit.fluxcd.io/"


class PlatformSource(BaseModel):
    """The Flux source of the platform stack in one cluster directory, as Flux reads it."""

    file: str = Field(description="Repository path of the file declaring it")
    kind: str = Field(description="OCIRepository or GitRepository")
    name: str
    url: str | None = None
    insecure: bool = False
    branch: str | None = None
    tag: str | None = None
    semver: str | None = None
    semver_filter: str | None = None
    digest: str | None = None

    @property
    def tracking(self) -> str:
        """How the source picks its revision, in Flux's order of precedence."""
        if self.kind == "GitRepository":
            return "branch"
        if self.digest:
            return "digest"
        if self.semver:
            return "semver"
        return "tag"

    @property
    def reference(self) -> str:
        """The value it tracks (branch, range, tag or digest)."""
        if self.kind == "GitRepository":
            return self.branch or "master"
        return self.digest or self.semver or self.tag or "latest"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_platform_source(text: str, *, file: str, name: str = PLATFORM_SOURCE) -> PlatformSource | None:
    """The platform source declared in a cluster file's text.

    The source named ``name`` wins; otherwise the file's only Flux source. ``None`` when
    the file declares none (or several, none of them named ``name``).

    Raises:
        YamlEditError: The file is not valid YAML.
    """
    sources: list[CommentedMap] = []
    for _, doc in iter_objects(load_documents(text, source=file)):
        if doc.get("kind") in _SOURCE_KINDS and str(doc.get("apiVersion", "")).startswith(_SOURCE_API_GROUP):
            sources.append(doc)
    named = [d for d in sources if (d.get("metadata") or {}).get("name") == name]
    chosen = named[0] if named else (sources[0] if len(sources) == 1 else None)
    if chosen is None:
        return None
    spec = chosen.get("spec") or {}
    ref = spec.get("ref") or {}
    return PlatformSource(
        file=file,
        kind=str(chosen["kind"]),
        name=str((chosen.get("metadata") or {}).get("name", "")),
        url=_text(spec.get("url")),
        insecure=bool(spec.get("insecure", False)),
        branch=_text(ref.get("branch")),
        tag=_text(ref.get("tag")),
        semver=_text(ref.get("semver")),
        semver_filter=_text(ref.get("semverFilter")),
        digest=_text(ref.get("digest")),
    )


def platform_file(environment: EnvironmentConfig) -> str:
    """``<cluster_dir>/platform.yaml``."""
    return f"{environment.cluster_dir.rstrip('/')}/{PLATFORM_FILE}"


def read_platform_source(repo: Path, environment: EnvironmentConfig) -> PlatformSource | None:
    """The platform source of ``environment`` in a checkout (``None`` when absent)."""
    file = platform_file(environment)
    path = paths.inside(repo, file)
    if not path.is_file():
        return None
    return parse_platform_source(path.read_text(encoding="utf-8"), file=file)
