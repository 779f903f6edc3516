"""The fleet policy: the seed's rules for long-lived environments, as checks on a fleet repository.

Prefect-free. Each rule has a short id; each violation is one line naming the file
and the rule (``clusters/production/platform.yaml: fixed-tag: ...``).

Rules (from the seed's change-promotion chapter):

* ``fixed-tag`` -- production pins a fixed tag: its platform source is an
  ``OCIRepository`` with ``.spec.ref.tag`` set to a version, no semver range (a range
  takes precedence over the tag in Flux) and no branch.
* ``semver-range`` -- staging tracks an OCI artifact with a semver range
  (``.spec.ref.semver``, a valid Masterminds range admitting more than one version).
* ``oci-artifact`` -- long-lived clusters track OCI artifacts, except development
  and any environment configured as a canary.
* ``tracks-main`` -- development and canaries track the default branch (``main``)
  with a ``GitRepository``.
* ``own-gotk-sync`` -- every ``clusters/<env>/flux-system/`` holds its own
  ``gotk-sync.yaml``, whose ``flux-system`` Kustomization points at ``./clusters/<env>``
  and whose ``GitRepository`` tracks the branch that cluster follows (the default
  branch for long-lived environments): a sandbox's sync file copied back by a
  promotion would point development at the sandbox's directory and branch.
* ``no-lingering-sandbox`` -- no sandbox directory lingers on the default branch:
  every directory under ``clusters/`` there is a long-lived environment, or one
  bootstrapped for itself on the default branch (a long-lived cluster the
  configuration does not manage; a sandbox's sync follows its own branch).
* ``environment-directory`` -- every configured environment has its directory.
* ``readable-yaml`` -- the environment's YAML files parse (otherwise nothing else can
  be checked in them).
* ``links-inside`` -- every symbolic link in the repository points inside it: the
  product refuses to read, copy or push through a link that leaves the repository
  (see :mod:`sandbox.paths`), and nothing here is read through one.

Which source is "the platform source" of an environment: the Flux source named
``platform`` declared in the environment's directory (outside ``flux-system/``); when
there is none, every declared source a Flux Kustomization of that directory uses.
Kustomizations sourced from the bootstrap ``GitRepository`` ``flux-system`` (the
cluster's own directory, such as an ``apps`` Kustomization) are not the platform
stack's tracking and are not checked by the tracking rules.

Which directories are long-lived environments: with a ``fleet.yaml``, its
``environments``; without one, the seed's three (development, staging, production)
plus every directory bootstrapped on the default branch for itself (its
``gotk-sync.yaml`` points at its own path and tracks the default branch).

Which are canaries: with a ``fleet.yaml``, those configured ``canary: true``; without
one, those whose platform source carries the annotation ``fleet-sandbox.io/canary:
"true"`` (the example fleet's ``local`` environment). Neither makes staging or
production a canary: their rules go by name.
"""

from __future__ import annotations

import os.path
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, Field

from sandbox import fleetrepo, paths
from sandbox.config import FleetConfig, TrackingKind
from sandbox.drivers.git import GitDriver
from sandbox.errors import InvalidInputError, SandboxError
from sandbox.manifest_objects import load_mappings
from sandbox.paths import OutsideRepositoryError
from sandbox.versions import parse_constraint, parse_tag
from sandbox.wiring import build_git

RULE_FIXED_TAG = "fixed-tag"
RULE_SEMVER_RANGE = "semver-range"
RULE_OCI_ARTIFACT = "oci-artifact"
RULE_TRACKS_MAIN = "tracks-main"
RULE_OWN_GOTK_SYNC = "own-gotk-sync"
RULE_NO_LINGERING_SANDBOX = "no-lingering-sandbox"
RULE_ENVIRONMENT_DIRECTORY = "environment-directory"
RULE_READABLE_YAML = "readable-yaml"
RULE_LINKS_INSIDE = "links-inside"

#: Every rule id with what it asks, for help texts and reports.
RULES: dict[str, str] = {
    RULE_FIXED_TAG: "production pins a fixed tag (no range, no branch)",
    RULE_SEMVER_RANGE: "staging tracks an OCI artifact with a semver range",
    RULE_OCI_ARTIFACT: "long-lived clusters track OCI artifacts (except development and canaries)",
    RULE_TRACKS_MAIN: "development and canaries track the default branch",
    RULE_OWN_GOTK_SYNC: "every clusters/<env>/flux-system/ holds its own gotk-sync.yaml for its own path",
    RULE_NO_LINGERING_SANDBOX: "no sandbox directory lingers on the default branch",
    RULE_ENVIRONMENT_DIRECTORY: "every configured environment has its cluster directory",
    RULE_READABLE_YAML: "an environment's YAML files parse",
    RULE_LINKS_INSIDE: "every symbolic link points inside the repository",
}

#: The seed's long-lived environments, assumed when there is no fleet.yaml.
SEED_ENVIRONMENTS = ("development", "staging", "production")
#: Annotation on an environment's platform source declaring it a canary, for a fleet repo without fleet.yaml.
CANARY_ANNOTATION = "fleet-sandbox.io/canary"
#: The conventional name of the platform stack's Flux source.
PLATFORM_SOURCE = "platform"
#: The bootstrap's Flux objects (``gotk-sync.yaml``).
BOOTSTRAP_NAME = "flux-system"

_SOURCE_GROUP = "source.toolkit.fluxcd.io/"
_KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io/"
_SOURCE_KINDS = ("GitRepository", "OCIRepository")


class Tracks(StrEnum):
    """How an environment must track the platform stack."""

    fixed_tag = "fixed-tag"
    semver_range = "semver-range"
    oci = "oci"
    main = "main"


class Violation(BaseModel):
    """One broken rule in one file."""

    file: str = Field(description="Repository path of the file (a directory ends with '/')")
    rule: str = Field(description="Rule id, see sandbox.policy.RULES")
    message: str = Field(description="What is wrong, on one line")

    def line(self) -> str:
        """``<file>: <rule>: <message>``."""
        return f"{self.file}: {self.rule}: {self.message}"


class EnvironmentPolicy(BaseModel):
    """What the policy asks of one long-lived environment."""

    name: str
    cluster_dir: str = Field(description="Repository path of its cluster directory")
    tracks: Tracks
    branch: str = Field(description="The branch its gotk-sync.yaml must track")


class PolicyReport(BaseModel):
    """The outcome of a policy check."""

    environments: list[str] = Field(default_factory=list, description="Long-lived environments checked")
    violations: list[Violation] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No violation."""
        return not self.violations

    def lines(self) -> list[str]:
        """One line per violation."""
        return [v.line() for v in self.violations]


# -- which environments, and what each must do ------------------------------------------------


def tracks_for(name: str, *, canary: bool = False, configured: TrackingKind | None = None) -> Tracks:
    """The rule an environment falls under: by its name first (the seed's), then its configuration."""
    if name == "production":
        return Tracks.fixed_tag
    if name == "staging":
        return Tracks.semver_range
    if name == "development" or canary:
        return Tracks.main
    if configured is TrackingKind.tag:
        return Tracks.fixed_tag
    if configured is TrackingKind.semver:
        return Tracks.semver_range
    return Tracks.oci


def environments_from_config(config: FleetConfig) -> list[EnvironmentPolicy]:
    """The long-lived environments of a ``fleet.yaml``."""
    default = config.fleet_repo.default_branch
    return [
        EnvironmentPolicy(
            name=name,
            cluster_dir=_normal(env.cluster_dir),
            tracks=tracks_for(name, canary=env.canary, configured=env.tracking.type),
            branch=default,
        )
        for name, env in sorted(config.environments.items())
    ]


def config_violations(config: FleetConfig, config_file: str) -> list[Violation]:
    """Environments whose configured tracking contradicts the rules."""
    found = []
    for name, env in sorted(config.environments.items()):
        tracks = tracks_for(name, canary=env.canary, configured=env.tracking.type)
        kind = env.tracking.type
        if tracks is Tracks.fixed_tag and kind is not TrackingKind.tag:
            found.append(
                Violation(
                    file=config_file,
                    rule=RULE_FIXED_TAG,
                    message=f"environment {name} is configured with tracking {kind.value}; {name} pins a fixed tag",
                )
            )
        elif tracks is Tracks.semver_range and kind is not TrackingKind.semver:
            found.append(
                Violation(
                    file=config_file,
                    rule=RULE_SEMVER_RANGE,
                    message=f"environment {name} is configured with tracking {kind.value}; "
                    f"{name} tracks a semver range",
                )
            )
        elif tracks is Tracks.oci and kind is TrackingKind.branch:
            found.append(
                Violation(
                    file=config_file,
                    rule=RULE_OCI_ARTIFACT,
                    message=f"environment {name} is configured to track branch {env.tracking.branch}; long-lived "
                    "clusters track OCI artifacts (mark it canary: true if it is a canary)",
                )
            )
        elif tracks is Tracks.main and kind is not TrackingKind.branch:
            found.append(
                Violation(
                    file=config_file,
                    rule=RULE_TRACKS_MAIN,
                    message=f"environment {name} is configured with tracking {kind.value}; "
                    f"{'canaries' if env.canary else name} track the {config.fleet_repo.default_branch} branch",
                )
            )
    return found


def environments_from_tree(repo: Path, clusters: Iterable[str], default_branch: str) -> list[EnvironmentPolicy]:
    """The long-lived environments of a fleet repo without ``fleet.yaml``.

    The seed's three, plus every directory bootstrapped for itself on the default
    branch (its gotk-sync.yaml points at its own path and tracks the default branch).
    """
    found = []
    for name in sorted(set(clusters)):
        cluster_dir = fleetrepo.cluster_dir(name)
        if name in SEED_ENVIRONMENTS or _bootstrapped_for_itself(repo, cluster_dir, default_branch):
            canary = _declared_canary(repo, cluster_dir)
            found.append(
                EnvironmentPolicy(
                    name=name, cluster_dir=cluster_dir, tracks=tracks_for(name, canary=canary), branch=default_branch
                )
            )
    return found


def _declared_canary(repo: Path, cluster_dir: str) -> bool:
    """Whether the directory's platform source is annotated as a canary's (see :data:`CANARY_ANNOTATION`)."""
    sources = _platform_sources(_read_cluster(repo, cluster_dir))
    return bool(sources) and all(
        str(((d.get("metadata") or {}).get("annotations") or {}).get(CANARY_ANNOTATION, "")) == "true"
        for _, d in sources
    )


def _bootstrapped_for_itself(repo: Path, cluster_dir: str, branch: str) -> bool:
    try:
        sync = paths.inside(repo, f"{cluster_dir}/{fleetrepo.SYNC_FILE}")
    except OutsideRepositoryError:
        return False  # reported by the links-inside rule; never read
    if not sync.is_file():
        return False
    try:
        docs = _documents(sync)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False
    path, source = _sync_target(docs)
    return path == cluster_dir and source is not None and _git_branch(source) == branch


# -- reading manifests ------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    return load_mappings(text)


def _normal(path: str) -> str:
    """A repository path as Flux reads ``spec.path``: ``./clusters/x/`` -> ``clusters/x``."""
    cleaned = os.path.normpath(str(path).strip() or ".").replace("\\", "/")
    return "" if cleaned == "." else cleaned.lstrip("/")


def _is(doc: Mapping[str, Any], group: str, kinds: Iterable[str]) -> bool:
    return str(doc.get("apiVersion", "")).startswith(group) and doc.get("kind") in tuple(kinds)


def _name(doc: Mapping[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("name", ""))


def _ref(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = (doc.get("spec") or {}).get("ref") or {}
    return ref if isinstance(ref, Mapping) else {}


def _git_branch(source: Mapping[str, Any]) -> str | None:
    """The branch a GitRepository follows, or None when a commit, name, semver or tag wins (Flux's precedence)."""
    ref = _ref(source)
    if any(ref.get(key) for key in ("commit", "name", "semver", "tag")):
        return None
    return str(ref.get("branch") or "master")


def _git_reference(source: Mapping[str, Any]) -> str:
    ref = _ref(source)
    for key in ("commit", "name", "semver", "tag"):
        if ref.get(key):
            return f"{key} {ref[key]}"
    return f"branch {ref.get('branch') or 'master'}"


def _sync_target(docs: list[dict[str, Any]]) -> tuple[str | None, dict[str, Any] | None]:
    """``(path, source)`` of a gotk-sync.yaml's ``flux-system`` Kustomization."""
    kustomizations = [d for d in docs if _is(d, _KUSTOMIZE_GROUP, ["Kustomization"]) and _name(d) == BOOTSTRAP_NAME]
    if not kustomizations:
        return None, None
    spec = kustomizations[0].get("spec") or {}
    source_ref = spec.get("sourceRef") or {}
    source = next(
        (
            d
            for d in docs
            if _is(d, _SOURCE_GROUP, [str(source_ref.get("kind", "GitRepository"))])
            and _name(d) == str(source_ref.get("name", ""))
        ),
        None,
    )
    return _normal(str(spec.get("path", ""))), source


@dataclass
class _ClusterFiles:
    """The Flux objects of one cluster directory (outside ``flux-system/``), by file."""

    objects: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unreadable: list[Violation] = field(default_factory=list)


def _read_cluster(repo: Path, cluster_dir: str) -> _ClusterFiles:
    found = _ClusterFiles()
    root = repo / cluster_dir
    try:
        files = paths.entries(repo, cluster_dir)
    except OutsideRepositoryError:
        return found  # reported by the links-inside rule; nothing is read through such a link
    for path in files.values():
        if path.suffix not in fleetrepo.YAML_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(repo).as_posix()
        if PurePosixPath(path.relative_to(root).as_posix()).parts[0] == BOOTSTRAP_NAME:
            continue
        try:
            docs = _documents(path)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            found.unreadable.append(Violation(file=rel, rule=RULE_READABLE_YAML, message=f"not valid YAML: {problem}"))
            continue
        found.objects.extend((rel, doc) for doc in docs)
    return found


def _platform_sources(files: _ClusterFiles) -> list[tuple[str, dict[str, Any]]]:
    sources = [(f, d) for f, d in files.objects if _is(d, _SOURCE_GROUP, _SOURCE_KINDS)]
    named = [(f, d) for f, d in sources if _name(d) == PLATFORM_SOURCE]
    if named:
        return named
    used = {
        (str(ref.get("kind", "")), str(ref.get("name", "")))
        for _, d in files.objects
        if _is(d, _KUSTOMIZE_GROUP, ["Kustomization"])
        for ref in [(d.get("spec") or {}).get("sourceRef") or {}]
    }
    return [(f, d) for f, d in sources if (str(d.get("kind")), _name(d)) in used]


# -- the rules ----------------------------------------------------------------------------------


def _check_tracking(env: EnvironmentPolicy, files: _ClusterFiles, default_branch: str) -> Iterator[Violation]:
    sources = _platform_sources(files)
    if not sources:
        if env.tracks is not Tracks.main:
            yield Violation(
                file=f"{env.cluster_dir}/",
                rule=RULE_OCI_ARTIFACT,
                message=f"{env.name} declares no OCIRepository for the platform stack; "
                "long-lived clusters track OCI artifacts",
            )
        return
    for file, source in sources:
        what = f"{source.get('kind')} {_name(source)}"
        if env.tracks is Tracks.main:
            yield from _check_tracks_main(env, file, source, what, default_branch)
            continue
        if source.get("kind") != "OCIRepository":
            yield Violation(
                file=file,
                rule=RULE_OCI_ARTIFACT,
                message=f"{what} tracks git {_git_reference(source)}; long-lived clusters track OCI artifacts "
                f"(only development and canaries track {default_branch})",
            )
            continue
        ref = _ref(source)
        if env.tracks is Tracks.fixed_tag:
            yield from _check_fixed_tag(env, file, what, ref)
        elif env.tracks is Tracks.semver_range:
            yield from _check_semver_range(env, file, what, ref)


def _check_tracks_main(
    env: EnvironmentPolicy, file: str, source: Mapping[str, Any], what: str, default_branch: str
) -> Iterator[Violation]:
    who = env.name if env.name == "development" else f"{env.name} (a canary)"
    if source.get("kind") != "GitRepository":
        yield Violation(
            file=file,
            rule=RULE_TRACKS_MAIN,
            message=f"{what} tracks an OCI artifact; {who} tracks the {default_branch} branch with a GitRepository",
        )
        return
    branch = _git_branch(source)
    if branch != default_branch:
        yield Violation(
            file=file,
            rule=RULE_TRACKS_MAIN,
            message=f"{what} tracks {_git_reference(source)}; {who} tracks the {default_branch} branch",
        )


def _check_fixed_tag(env: EnvironmentPolicy, file: str, what: str, ref: Mapping[str, Any]) -> Iterator[Violation]:
    if ref.get("semver"):
        yield Violation(
            file=file,
            rule=RULE_FIXED_TAG,
            message=f"{what} follows the semver range {str(ref['semver'])!r}; {env.name} pins a fixed tag",
        )
        return
    tag = ref.get("tag")
    if not tag:
        if ref.get("digest"):
            return  # pinned even tighter than a tag
        yield Violation(
            file=file,
            rule=RULE_FIXED_TAG,
            message=f"{what} sets no tag (Flux pulls 'latest'); {env.name} pins a fixed tag",
        )
        return
    if parse_tag(str(tag)) is None:
        yield Violation(
            file=file,
            rule=RULE_FIXED_TAG,
            message=f"{what} pins tag {str(tag)!r}, which is not a release version; {env.name} pins a fixed tag",
        )


def _check_semver_range(env: EnvironmentPolicy, file: str, what: str, ref: Mapping[str, Any]) -> Iterator[Violation]:
    constraint = ref.get("semver")
    if not constraint:
        pinned = f"pins tag {str(ref['tag'])!r}" if ref.get("tag") else "sets no semver range"
        yield Violation(
            file=file,
            rule=RULE_SEMVER_RANGE,
            message=f"{what} {pinned}; {env.name} tracks a semver range (e.g. 1.2.x)",
        )
        return
    text = str(constraint)
    try:
        parse_constraint(text)
    except InvalidInputError as exc:
        yield Violation(file=file, rule=RULE_SEMVER_RANGE, message=f"{what}: {exc}")
        return
    if parse_tag(text.strip().lstrip("=").strip()) is not None:
        yield Violation(
            file=file,
            rule=RULE_SEMVER_RANGE,
            message=f"{what} semver {text!r} admits a single version; {env.name} tracks a range (e.g. 1.2.x)",
        )


def check_gotk_sync(repo: Path, cluster_dir: str, branch: str) -> list[Violation]:
    """``clusters/<x>/flux-system/gotk-sync.yaml`` exists, points at ``cluster_dir`` and tracks ``branch``."""
    sync_rel = f"{cluster_dir}/{fleetrepo.SYNC_FILE}"
    try:
        sync = paths.inside(repo, sync_rel)
    except OutsideRepositoryError:
        return []  # reported by the links-inside rule; never read
    if not sync.is_file():
        return [
            Violation(
                file=sync_rel,
                rule=RULE_OWN_GOTK_SYNC,
                message=f"missing: every cluster holds its own gotk-sync.yaml (for ./{cluster_dir})",
            )
        ]
    try:
        docs = _documents(sync)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        return [Violation(file=sync_rel, rule=RULE_READABLE_YAML, message=f"not valid YAML: {problem}")]
    path, source = _sync_target(docs)
    if path is None:
        return [
            Violation(
                file=sync_rel,
                rule=RULE_OWN_GOTK_SYNC,
                message=f"no Kustomization {BOOTSTRAP_NAME}: it must reconcile ./{cluster_dir}",
            )
        ]
    found = []
    if path != cluster_dir:
        found.append(
            Violation(
                file=sync_rel,
                rule=RULE_OWN_GOTK_SYNC,
                message=f"Kustomization {BOOTSTRAP_NAME} points at ./{path}, not at its own path ./{cluster_dir}",
            )
        )
    if source is None:
        found.append(
            Violation(
                file=sync_rel,
                rule=RULE_OWN_GOTK_SYNC,
                message=f"Kustomization {BOOTSTRAP_NAME} uses a source this file does not declare",
            )
        )
    elif source.get("kind") == "GitRepository" and _git_branch(source) != branch:
        found.append(
            Violation(
                file=sync_rel,
                rule=RULE_OWN_GOTK_SYNC,
                message=f"GitRepository {_name(source)} tracks {_git_reference(source)}, not branch {branch}",
            )
        )
    return found


def check_tree(
    repo: Path,
    environments: list[EnvironmentPolicy],
    *,
    default_branch: str,
    default_branch_clusters: Iterable[str] | None = None,
) -> PolicyReport:
    """Check the long-lived environments of a fleet repository's working tree.

    Args:
        repo: The fleet repository (a checkout or a plain directory tree).
        environments: The long-lived environments and what each must do.
        default_branch: The trunk branch (development and canaries track it).
        default_branch_clusters: The directory names under ``clusters/`` on the default
            branch, for the lingering-sandbox rule; ``None`` skips that rule (on a
            sandbox branch, the sandbox's own directory belongs there).

    Returns:
        The environments checked and every violation, in file order per rule.
    """
    violations: list[Violation] = [
        Violation(
            file=link.path,
            rule=RULE_LINKS_INSIDE,
            message=f"symbolic link to {link.target} leads outside the repository; nothing is read through it",
        )
        for link in paths.leaving_links(repo)
    ]
    for env in environments:
        try:
            paths.inside(repo, env.cluster_dir)
        except OutsideRepositoryError:
            continue  # reported above
        if not (repo / env.cluster_dir).is_dir():
            violations.append(
                Violation(
                    file=f"{env.cluster_dir}/",
                    rule=RULE_ENVIRONMENT_DIRECTORY,
                    message=f"long-lived environment {env.name} has no cluster directory",
                )
            )
            continue
        files = _read_cluster(repo, env.cluster_dir)
        violations.extend(files.unreadable)
        violations.extend(_check_tracking(env, files, default_branch))
        violations.extend(check_gotk_sync(repo, env.cluster_dir, env.branch))
    if default_branch_clusters is not None:
        known = {env.cluster_dir for env in environments}
        for name in sorted(set(default_branch_clusters)):
            cluster_dir = fleetrepo.cluster_dir(name)
            # A directory bootstrapped for itself on the default branch is a long-lived cluster
            # this fleet.yaml does not manage (the example fleet's local environment under the
            # simulated demo's config), not a sandbox: a sandbox's sync follows its own branch.
            if cluster_dir not in known and not _bootstrapped_for_itself(repo, cluster_dir, default_branch):
                violations.append(
                    Violation(
                        file=f"{cluster_dir}/",
                        rule=RULE_NO_LINGERING_SANDBOX,
                        message=f"{cluster_dir}/ is not a long-lived environment: a sandbox directory must not "
                        f"linger on {default_branch} (promote it or delete it)",
                    )
                )
    return PolicyReport(environments=[env.name for env in environments], violations=violations)


# -- a repository on disk, with or without fleet.yaml -------------------------------------------


def _clusters_on_branch(git: GitDriver, repo: Path, ref: str) -> list[str]:
    return git.list_tree(repo, ref, fleetrepo.CLUSTERS_DIR, directories=True)  # none without clusters/


def check_repository(
    repo: Path,
    config: FleetConfig | None = None,
    *,
    config_file: str = "fleet.yaml",
    git: GitDriver | None = None,
) -> PolicyReport:
    """Check a fleet repository on disk (``sandbox check``).

    A git checkout on another branch than the default one is checked as it is, except
    for the lingering-sandbox rule, which reads the default branch's ``clusters/``
    from git. A plain directory (no ``.git``) is taken as the default branch's tree.

    Args:
        repo: The fleet repository's directory.
        config: The fleet configuration; None applies the seed's defaults.
        config_file: How to name the configuration file in violations.
        git: The git driver (default: ``git`` on the PATH).

    Raises:
        InvalidInputError: Not a fleet repository, or the default branch is missing.
    """
    repo = repo.resolve()
    if not repo.is_dir():
        raise InvalidInputError(f"{repo} is not a directory")
    try:
        clusters = fleetrepo.discover_environments(repo)
    except OutsideRepositoryError:
        clusters = []  # clusters/ itself leaves the repository: the links-inside rule says so
    default_branch = config.fleet_repo.default_branch if config else "main"
    on_default: list[str] | None = clusters
    if (repo / ".git").exists():
        git = git or build_git()
        try:
            current = git.current_branch(repo)
            if current != default_branch:
                ref = next(
                    (r for r in (default_branch, f"origin/{default_branch}") if git.rev_parse(repo, r) is not None),
                    None,
                )
                if ref is None:
                    raise InvalidInputError(f"default branch {default_branch!r} not found in {repo}")
                on_default = _clusters_on_branch(git, repo, ref)
        except InvalidInputError:
            raise
        except SandboxError as exc:
            raise InvalidInputError(f"{repo}: cannot read git: {exc}") from None
    if config is not None:
        environments = environments_from_config(config)
        extra = config_violations(config, config_file)
    else:
        environments = environments_from_tree(repo, clusters, default_branch)
        extra = []
    report = check_tree(repo, environments, default_branch=default_branch, default_branch_clusters=on_default)
    report.violations = extra + report.violations
    return report
