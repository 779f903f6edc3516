"""Releases of the platform stack, Prefect-free.

The seed's last promotion steps, as plain functions over the git driver, the OCI
registry driver and the git-hosting driver:

1. **Publish** (:func:`tag_release` then :func:`publish_artifact`, or :func:`release`):
   compute the next version from the existing tags (git and registry), put an
   annotated tag on the default branch of the fleet remote, package the tagged
   commit's ``platform/`` directory as a Flux OCI artifact and push it. An existing
   tag is never moved or overwritten; a git tag whose artifact is missing (a push that
   failed half-way) is finished instead of bumped past.
2. **Plan** (:func:`release_plan`): what each long-lived environment runs before and
   after a release, reading the cluster files as Flux reads them (``.spec.ref`` of the
   ``platform`` source in ``clusters/<env>/platform.yaml``) and the registry's tags.
   Without a version the plan is about the newest published release (before = the
   registry without it, after = with it); with ``version`` it is about publishing that
   version. A release the staging range does not admit is flagged with a suggested
   range, which :func:`propose_range` proposes as a pull request.
3. **Production** (:func:`plan_production`, :func:`propose_production`): bump the
   fixed ``.spec.ref.tag`` of production's source by a pull request whose diff is that
   one scalar (round-trip edit). The approval gate lives in the Prefect flow; rolling
   back is the same proposal with an earlier tag.

Every step works on a fresh temporary clone of the fleet remote (under
``<state_dir>/release/``), so concurrent runs never share a working tree and nothing
stale survives a crash.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import semver
from pydantic import BaseModel, Field, ValidationError
from ruamel.yaml.comments import CommentedMap

from sandbox import paths
from sandbox.config import EnvironmentConfig, FleetConfig, TrackingKind
from sandbox.drivers.git import GitCli
from sandbox.drivers.git_hosting import GitHosting, PullRequest
from sandbox.drivers.registry import (
    FluxArtifact,
    OciRegistry,
    RegistryConfig,
    RegistryCredentials,
    build_registry,
    validate_tag,
)
from sandbox.errors import ConfigError, ConflictError, InvalidInputError, PermanentError, SandboxError
from sandbox.hardening import check_credentials_transport
from sandbox.proc import run
from sandbox.redaction import register_basic_auth
from sandbox.versions import Bump, next_version, parse_constraint, parse_tag, resolve
from sandbox.wiring import build_drivers
from sandbox.yamledit import iter_objects, load_documents, set_scalar

#: The platform stack's directory in the fleet repository (the artifact's root).
PLATFORM_DIR = "platform"
#: The file in each cluster directory that declares the platform source.
PLATFORM_FILE = "platform.yaml"
#: The name of the Flux source object for the platform stack.
PLATFORM_SOURCE = "platform"
#: Branches of release pull requests start with this.
RELEASE_BRANCH_PREFIX = "release/"

_SOURCE_KINDS = ("OCIRepository", "GitRepository")
_SOURCE_API_GROUP = "source.toolkit.fluxcd.io/"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class ReleaseError(PermanentError):
    """A release step cannot proceed (missing directory, moved tag, no source to edit)."""


class ReleaseExistsError(ConflictError):
    """The release's tag already exists (in git or in the registry) and is never overwritten."""


# -- versions ------------------------------------------------------------------------------


def validate_release_version(version: str) -> str:
    """Check a version given for a release: strict ``X.Y.Z`` (optionally ``-prerelease``).

    Releases are tagged as bare versions (no ``v``), which every Flux version parses.

    Raises:
        InvalidInputError: Not a strict semantic version.
    """
    try:
        semver.Version.parse(version)
    except (ValueError, TypeError):
        raise InvalidInputError(f"invalid release version {version!r}: use X.Y.Z, e.g. 1.2.4") from None
    return version


def _version_key(tag: str) -> semver.Version:
    parsed = parse_tag(tag)
    if parsed is None:
        raise ValueError(tag)
    return parsed.replace(build=None)


def _release_tags(tags: Collection[str]) -> list[str]:
    """Tags Flux sees as versions, highest first."""
    return sorted((t for t in tags if parse_tag(t) is not None), key=_version_key, reverse=True)


def newest_release(tags: Collection[str]) -> str | None:
    """The highest tag Flux would parse as a version, prereleases included."""
    candidates = _release_tags(tags)
    return candidates[0] if candidates else None


def previous_release(tags: Collection[str], current: str) -> str | None:
    """The highest release (no prerelease) below ``current``: what a rollback goes back to."""
    current_version = parse_tag(current)
    if current_version is None:
        return None
    for tag in _release_tags(tags):
        version = _version_key(tag)
        if not version.prerelease and version < current_version.replace(build=None):
            return tag
    return None


def suggest_range(current: str, version: str) -> str:
    """A semver range in the style of ``current`` that admits ``version``.

    ``1.2.x`` -> ``1.3.x``; ``1.x``/``1`` -> ``2.x``; ``^1.2.0`` -> ``^2.0.0``; ``~1.2.0`` ->
    ``~1.3.0``; anything else -> ``X.Y.x``.
    """
    target = semver.Version.parse(version)
    text = current.strip()
    candidates: list[str] = []
    if re.fullmatch(r"[v=]?\s*\d+\.\d+\.[xX*]", text):
        candidates.append(f"{target.major}.{target.minor}.x")
    elif re.fullmatch(r"[v=]?\s*\d+(\.[xX*]){0,2}", text):
        candidates.append(f"{target.major}.x")
    elif text.startswith("^"):
        candidates.append(f"^{target.major}.{target.minor}.{target.patch}")
    elif text.startswith("~"):
        candidates.append(f"~{target.major}.{target.minor}.{target.patch}")
    candidates.append(f"{target.major}.{target.minor}.x")
    for candidate in candidates:
        if parse_constraint(candidate).check(version):
            return candidate
    return f"={version}"


# -- decisions (pure) --------------------------------------------------------------------------


class ReleaseDecision(BaseModel):
    """Which version to release at which commit, and whether the git tag must be made."""

    version: str
    commit: str
    create_tag: bool = Field(description="False when the git tag exists already (its artifact is missing)")
    warnings: list[str] = Field(default_factory=list)

    @property
    def resumed(self) -> bool:
        """The git tag existed: this run finishes an earlier release."""
        return not self.create_tag


def decide_release(
    *,
    git_tags: Mapping[str, str],
    registry_tags: Collection[str],
    main_commit: str,
    bump: Bump | None = None,
    version: str | None = None,
    existing_tag: bool = False,
    registry_url: str = "the registry",
    default_branch: str = "main",
) -> ReleaseDecision:
    """Decide the release from the tags that exist; refuse anything that would overwrite.

    * ``version`` names the release; otherwise ``bump`` (default patch) applies to the
      highest version among git *and* registry tags.
    * A git tag at ``main_commit`` without an artifact that this same ``bump`` would
      have produced is an interrupted release: it is finished, not bumped past.
    * A registry tag that exists is never overwritten; a git tag that exists elsewhere
      than ``main_commit`` is never moved (``existing_tag`` publishes it where it is).

    Args:
        git_tags: Tag -> tagged commit on the fleet remote.
        registry_tags: Tags in the OCI repository.
        main_commit: The default branch's head, which a new tag marks.
        bump: patch, minor or major.
        version: An explicit version (instead of ``bump``).
        existing_tag: Publish the artifact of the existing git tag ``version``.
        registry_url: For messages.
        default_branch: For messages.

    Raises:
        InvalidInputError: Both or an invalid version; ``existing_tag`` without a tag.
        ReleaseExistsError: The tag exists in the registry, or in git at another commit.
    """
    if bump is not None and version is not None:
        raise InvalidInputError("give --bump or --version, not both")
    if existing_tag and version is None:
        raise InvalidInputError("--existing-tag needs --version naming the git tag to publish")
    published = set(registry_tags)
    all_tags = set(git_tags) | published
    target: str | None = None
    if version is not None:
        target = validate_release_version(version)
    else:
        chosen: Bump = bump or "patch"
        interrupted = [
            tag for tag, commit in git_tags.items() if commit == main_commit and tag not in published and parse_tag(tag)
        ]
        for tag in _release_tags(interrupted):
            if next_version(all_tags - {tag}, chosen) == tag:
                target = tag
                break
        target = target or next_version(all_tags, chosen)
    if target in published:
        raise ReleaseExistsError(
            f"release {target} already exists: registry tag {target} in {registry_url} is never overwritten"
        )
    target_version = _version_key(target)
    for other in sorted(all_tags - {target}):
        if parse_tag(other) is not None and _version_key(other) == target_version:
            raise ReleaseExistsError(f"release {target} already exists as tag {other} (the same version for Flux)")
    unpublished = [t for t in _release_tags(set(git_tags) - published - {target})]
    warnings = [
        f"git tag {tag} has no artifact in {registry_url} (publish it: sandbox release --version {tag} --existing-tag)"
        for tag in unpublished[:3]
    ]
    tagged = git_tags.get(target)
    if tagged is None:
        if existing_tag:
            raise InvalidInputError(f"--existing-tag: git tag {target} does not exist")
        return ReleaseDecision(version=target, commit=main_commit, create_tag=True, warnings=warnings)
    if tagged == main_commit or existing_tag:
        return ReleaseDecision(version=target, commit=tagged, create_tag=False, warnings=warnings)
    raise ReleaseExistsError(
        f"git tag {target} already exists at {tagged[:12]}, not at {default_branch} ({main_commit[:12]}); "
        f"tags are never moved (publish it as it is with --version {target} --existing-tag)"
    )


# -- reading the cluster files ----------------------------------------------------------------


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


# -- settings -----------------------------------------------------------------------------------


def configured_registry(config: FleetConfig) -> RegistryConfig | None:
    """The registry settings in fleet.yaml (``drivers.registry``), if any."""
    return config.drivers.registry


def registry_from_sources(config: FleetConfig, sources: Mapping[str, PlatformSource | None]) -> RegistryConfig | None:
    """The registry the clusters read: the OCIRepository URL of a semver, then a tag, environment."""
    order = {TrackingKind.semver: 0, TrackingKind.tag: 1, TrackingKind.branch: 2}
    for name in sorted(config.environments, key=lambda n: order[config.environments[n].tracking.type]):
        source = sources.get(name)
        if source is not None and source.kind == "OCIRepository" and source.url:
            try:
                return RegistryConfig(url=source.url, insecure=source.insecure)
            except ValueError:
                continue
    return None


def registry_credentials(
    settings: RegistryConfig,
    *,
    password: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RegistryCredentials | None:
    """Credentials from the environment (the password possibly from a Secret block, given here).

    Returns:
        ``None`` when neither username nor password is set (the docker config then applies).

    Raises:
        ConfigError: Only one of username and password is set (names the variables, not values),
            or they would be sent over plain HTTP (``insecure``) to another machine.
    """
    env = os.environ if environ is None else environ
    username = env.get(settings.username_env) or None
    secret = password or env.get(settings.password_env) or None
    # The password, and the basic-auth header it travels in, are redacted from everything from now on.
    register_basic_auth(username, secret)
    if username is None and secret is None:
        return None
    if username is None or secret is None:
        missing = settings.username_env if username is None else f"{settings.password_env} (or the Secret block)"
        raise ConfigError(f"registry credentials are incomplete: {missing} is not set")
    check_credentials_transport(settings.url, "the registry", plain_http=settings.insecure)
    return RegistryCredentials(username=username, password=secret)


def source_url(remote: str) -> str:
    """The fleet remote as the artifact's ``org.opencontainers.image.source``: no credentials.

    Local paths become ``file://`` URIs; ``user:password@`` is dropped from every URL and
    any user info from http(s) URLs (tokens travel there); ``ssh://git@host`` stays.
    """
    if "://" not in remote and not re.match(r"^[\w.-]+@[\w.-]+:", remote):
        return Path(remote).expanduser().resolve().as_uri()
    if re.match(r"^https?://", remote):
        return re.sub(r"^(https?://)[^/@\s]+@", r"\1", remote)
    return re.sub(r"(://)[^/@\s:]+:[^/@\s]+@", r"\1", remote)


# -- the context --------------------------------------------------------------------------------


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
    git: GitCli
    registry: OciRegistry
    hosting: GitHosting | None = None
    progress: Progress = _quiet
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


def _head(ctx: ReleaseContext, repo: Path) -> str:
    commit = ctx.git.rev_parse(repo, "HEAD")
    if commit is None:
        raise ReleaseError(f"{ctx.default_branch} of {ctx.remote} has no commit")
    return commit


def _commit_time(git: GitCli, repo: Path, commit: str) -> str:
    """The committer time of ``commit`` as RFC 3339 UTC (the artifact's ``created``).

    The commit's time rather than the push time keeps the artifact reproducible: the
    same tag always yields the same manifest digest.
    """
    done = run(git.command(repo, "show", "-s", "--format=%ct", commit))
    return datetime.fromtimestamp(int(done.stdout.strip()), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- publish --------------------------------------------------------------------------------------


class TaggedRelease(BaseModel):
    """The release's git tag, made now or found from an interrupted run."""

    version: str
    commit: str
    tag_created: bool
    warnings: list[str] = Field(default_factory=list)


class PublishedRelease(BaseModel):
    """A release whose git tag and artifact both exist."""

    version: str
    commit: str
    revision: str = Field(description="org.opencontainers.image.revision: <tag>@sha1:<commit>")
    source: str = Field(description="org.opencontainers.image.source")
    artifact: str = Field(description="oci://host/repository:tag")
    digest: str = Field(description="Manifest digest")
    tag_created: bool = Field(description="False when an existing git tag was published (resume)")
    already_published: bool = Field(default=False, description="The artifact was there from an earlier attempt")
    warnings: list[str] = Field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line for people."""
        how = "tagged and published" if self.tag_created else "published existing git tag"
        if self.already_published:
            how = "already published"
        return f"release {self.version} {how}: {self.artifact} ({self.digest}) from {self.revision}"


def tag_release(
    ctx: ReleaseContext,
    *,
    bump: Bump | None = None,
    version: str | None = None,
    existing_tag: bool = False,
) -> TaggedRelease:
    """Decide the version (see :func:`decide_release`) and push its annotated tag.

    Raises:
        InvalidInputError: Invalid version or flags.
        ReleaseExistsError: The tag exists already (registry, or git elsewhere).
    """
    if version is not None:
        validate_release_version(version)
    with ctx.checkout() as repo:
        main_commit = _head(ctx, repo)
        git_tags = ctx.git.remote_tags(ctx.remote)
        registry_tags = ctx.registry.list_tags()
        decision = decide_release(
            git_tags=git_tags,
            registry_tags=registry_tags,
            main_commit=main_commit,
            bump=bump,
            version=version,
            existing_tag=existing_tag,
            registry_url=ctx.registry.url,
            default_branch=ctx.default_branch,
        )
        for warning in decision.warnings:
            ctx.progress(f"warning: {warning}")
        if decision.create_tag:
            ctx.git.tag(repo, decision.version, f"platform {decision.version}")
            ctx.git.push_tag(repo, decision.version)
            ctx.progress(f"tagged {ctx.default_branch} ({main_commit[:12]}) as {decision.version}")
        else:
            ctx.progress(f"git tag {decision.version} exists at {decision.commit[:12]}: publishing its artifact")
    return TaggedRelease(
        version=decision.version,
        commit=decision.commit,
        tag_created=decision.create_tag,
        warnings=decision.warnings,
    )


def publish_artifact(ctx: ReleaseContext, tagged: TaggedRelease) -> PublishedRelease:
    """Package ``platform/`` at the tagged commit as a Flux artifact and push it under the tag.

    Idempotent: an artifact already carrying this tag's revision counts as published.

    Raises:
        ReleaseError: The tag vanished or moved, or the commit has no ``platform/``.
        ReleaseExistsError: The registry tag holds a different artifact.
    """
    version = tagged.version
    revision = f"{version}@sha1:{tagged.commit}"
    source = source_url(ctx.remote)
    with ctx.checkout() as repo:
        now_tagged = ctx.git.remote_tags(ctx.remote).get(version)
        if now_tagged != tagged.commit:
            where = f"now at {now_tagged[:12]}" if now_tagged else "gone"
            raise ReleaseError(f"git tag {version} moved since it was made ({where}); nothing published")
        existing = ctx.registry.get_manifest(version)
        if existing is not None:
            if existing.revision != revision:
                raise ReleaseExistsError(
                    f"registry tag {version} in {ctx.registry.url} holds {existing.revision or 'another artifact'}, "
                    f"not {revision}; it is never overwritten"
                )
            ctx.progress(f"{ctx.registry.url}:{version} already holds {revision}")
            return PublishedRelease(
                version=version,
                commit=tagged.commit,
                revision=revision,
                source=source,
                artifact=f"{ctx.registry.url}:{version}",
                digest=existing.digest,
                tag_created=tagged.tag_created,
                already_published=True,
                warnings=tagged.warnings,
            )
        ctx.git.reset_hard(repo, tagged.commit)
        # Links are not packaged (see build_flux_tarball); the directory itself must not lead outside.
        content = paths.inside(repo, PLATFORM_DIR)
        if not content.is_dir():
            raise ReleaseError(f"{version} ({tagged.commit[:12]}) has no {PLATFORM_DIR}/ directory to package")
        artifact = FluxArtifact(
            directory=content,
            source=source,
            revision=revision,
            created=_commit_time(ctx.git, repo, tagged.commit),
        )
        pushed = ctx.registry.push_artifact(version, artifact)
    ctx.progress(f"pushed {pushed.url} ({pushed.digest})")
    return PublishedRelease(
        version=version,
        commit=tagged.commit,
        revision=revision,
        source=source,
        artifact=pushed.url,
        digest=pushed.digest,
        tag_created=tagged.tag_created,
        warnings=tagged.warnings,
    )


def release(
    ctx: ReleaseContext,
    *,
    bump: Bump | None = None,
    version: str | None = None,
    existing_tag: bool = False,
) -> PublishedRelease:
    """Tag and publish in one call (the flow runs the two steps as separate tasks)."""
    tagged = tag_release(ctx, bump=bump, version=version, existing_tag=existing_tag)
    return publish_artifact(ctx, tagged)


# -- plan -------------------------------------------------------------------------------------------


class EnvironmentPlan(BaseModel):
    """What one environment runs before and after the release."""

    environment: str
    tracking: str = Field(description="branch, semver, tag or digest (as the cluster file says)")
    reference: str = Field(description="The branch, range, tag or digest it tracks")
    before: str | None = Field(description="What it runs now (None: nothing matches)")
    after: str | None = Field(description="What it runs once the release is published")
    notes: list[str] = Field(default_factory=list)

    @property
    def changes(self) -> bool:
        """Whether the release changes what this environment runs."""
        return self.before != self.after


class ReleasePlan(BaseModel):
    """What each environment runs before and after a release."""

    version: str | None = Field(description="The release the plan is about (None: no release yet)")
    published: bool = Field(description="Whether that version is in the registry already")
    registry: str
    main_commit: str
    environments: list[EnvironmentPlan]
    major_bump: bool = Field(description="The release raises the major version over every earlier release")
    range_changes: dict[str, str] = Field(
        default_factory=dict, description="Environment -> suggested range, where the range does not admit the release"
    )
    range_proposals: dict[str, str] = Field(
        default_factory=dict,
        description="Environment -> branch on the fleet remote that proposes that range change (pull request open)",
    )


def _filter_tags(tags: Sequence[str], pattern: str | None) -> tuple[list[str], str | None]:
    if not pattern:
        return list(tags), None
    try:
        compiled = re.compile(pattern)
    except re.error:
        return list(tags), f"invalid semverFilter {pattern!r} (ignored here; Flux would fail)"
    return [t for t in tags if compiled.search(t)], None


def _newer(version: str, than: str | None) -> bool:
    return than is None or parse_tag(than) is None or _version_key(version) > _version_key(than)


@dataclass(frozen=True)
class _PlanInputs:
    """What every environment's row is computed from."""

    registry_url: str
    registry_tags: Sequence[str]
    branch_heads: Mapping[str, str]
    pending: str | None
    before_tags: list[str]
    after_tags: list[str]
    major_bump: bool

    @property
    def pending_version(self) -> semver.Version | None:
        return _version_key(self.pending) if self.pending and parse_tag(self.pending) else None


def _plan_branch(
    name: str, env: EnvironmentConfig, source: PlatformSource | None, inputs: _PlanInputs, notes: list[str]
) -> EnvironmentPlan:
    file = platform_file(env)
    branch = (source.branch if source else None) or env.tracking.branch or "main"
    if env.tracking.branch and env.tracking.branch != branch:
        notes.append(f"fleet.yaml says branch {env.tracking.branch}; {file} says {branch}")
    head = inputs.branch_heads.get(branch)
    running = f"{branch}@{head[:12]}" if head else f"{branch} (no such branch)"
    notes.append(f"follows {branch}; a release does not change it")
    return EnvironmentPlan(
        environment=name, tracking="branch", reference=branch, before=running, after=running, notes=notes
    )


def _plan_semver(
    name: str,
    env: EnvironmentConfig,
    source: PlatformSource | None,
    inputs: _PlanInputs,
    notes: list[str],
    range_changes: dict[str, str],
    range_proposals: dict[str, str],
) -> EnvironmentPlan:
    file = platform_file(env)
    constraint = (source.semver if source else None) or env.tracking.range or ""
    if env.tracking.range and env.tracking.range != constraint:
        notes.append(f"fleet.yaml says range {env.tracking.range}; {file} says {constraint} (Flux reads the file)")
    semver_filter = source.semver_filter if source else None
    before_candidates, problem = _filter_tags(inputs.before_tags, semver_filter)
    after_candidates, _ = _filter_tags(inputs.after_tags, semver_filter)
    if problem:
        notes.append(problem)
    try:
        before = resolve(constraint, before_candidates)
        after = resolve(constraint, after_candidates)
    except SandboxError as exc:
        notes.append(str(exc))
        return EnvironmentPlan(
            environment=name, tracking="semver", reference=constraint, before=None, after=None, notes=notes
        )
    pending, pending_version = inputs.pending, inputs.pending_version
    if pending is not None and pending_version is not None:
        admitted = parse_constraint(constraint).check(pending_version)
        if admitted and after == pending:
            notes.append(f"picks up {pending} automatically")
        elif not admitted and pending_version.prerelease:
            notes.append(f"prerelease {pending} is not picked by {constraint}")
        elif not admitted and _newer(pending, after):
            suggestion = suggest_range(constraint, str(pending_version))
            range_changes[name] = suggestion
            kind = "a major bump" if inputs.major_bump else "newer"
            branch = range_branch(name, suggestion)
            if branch in inputs.branch_heads:
                range_proposals[name] = branch
                notes.append(
                    f"{pending} ({kind}) is outside {constraint}: range change to {suggestion} proposed on "
                    f"branch {branch}; {name} moves once that pull request is merged"
                )
            else:
                notes.append(
                    f"{pending} ({kind}) is outside {constraint}: needs a range change by pull request "
                    f"(sandbox release propose-range --env {name} --range {suggestion})"
                )
    if before is None and after is None:
        notes.append(f"no published tag satisfies {constraint}")
    return EnvironmentPlan(
        environment=name, tracking="semver", reference=constraint, before=before, after=after, notes=notes
    )


def _plan_tag(
    name: str, env: EnvironmentConfig, source: PlatformSource | None, inputs: _PlanInputs, notes: list[str]
) -> EnvironmentPlan:
    file = platform_file(env)
    tag = (source.tag if source else None) or env.tracking.tag or "latest"
    if env.tracking.tag and env.tracking.tag != tag:
        notes.append(f"fleet.yaml says tag {env.tracking.tag}; {file} says {tag} (Flux reads the file)")
    if tag not in inputs.registry_tags:
        notes.append(f"{tag} is not in {inputs.registry_url}: the cluster cannot pull it")
    pending = inputs.pending
    if pending and parse_tag(tag) and parse_tag(pending) and _version_key(pending) > _version_key(tag):
        branch = production_branch(name, pending)
        if branch in inputs.branch_heads:
            notes.append(f"{pending} approved and proposed on branch {branch}; {name} moves once it is merged")
        else:
            notes.append(
                f"{pending} waits for an approved pull request "
                f"(sandbox release promote-production --env {name} --version {pending})"
            )
    else:
        notes.append("changes only by an approved pull request")
    return EnvironmentPlan(environment=name, tracking="tag", reference=tag, before=tag, after=tag, notes=notes)


def compute_plan(
    config: FleetConfig,
    sources: Mapping[str, PlatformSource | None],
    *,
    registry_tags: Sequence[str],
    branch_heads: Mapping[str, str],
    main_commit: str,
    registry_url: str,
    version: str | None = None,
) -> ReleasePlan:
    """The release plan from what was read (pure: no git, no registry).

    Args:
        config: Environments and how fleet.yaml says they track the platform.
        sources: Environment -> its platform source as read at the default branch.
        registry_tags: Tags in the OCI repository.
        branch_heads: Branch -> commit on the fleet remote.
        main_commit: The default branch's head.
        registry_url: Where releases are published.
        version: The release to plan for; default the newest published one.
    """
    pending = version if version is not None else newest_release(registry_tags)
    before_tags = [t for t in registry_tags if t != pending]
    after_tags = before_tags + ([pending] if pending else [])
    earlier = [_version_key(t) for t in _release_tags(before_tags)]
    pending_version = _version_key(pending) if pending and parse_tag(pending) else None
    inputs = _PlanInputs(
        registry_url=registry_url,
        registry_tags=registry_tags,
        branch_heads=branch_heads,
        pending=pending,
        before_tags=before_tags,
        after_tags=after_tags,
        major_bump=bool(pending_version and earlier and pending_version.major > max(v.major for v in earlier)),
    )
    rows: list[EnvironmentPlan] = []
    range_changes: dict[str, str] = {}
    range_proposals: dict[str, str] = {}
    for name, env in config.environments.items():
        source = sources.get(name)
        file = platform_file(env)
        notes: list[str] = []
        if source is None:
            notes.append(f"no Flux source for the platform in {file}; using fleet.yaml")
        tracking = source.tracking if source else env.tracking.type.value
        if tracking != env.tracking.type.value:
            notes.append(f"fleet.yaml says tracking {env.tracking.type.value}; {file} tracks by {tracking}")
        if source and source.kind == "OCIRepository" and source.url and source.url.rstrip("/") != registry_url:
            notes.append(f"reads {source.url}, but releases go to {registry_url}")
        if tracking == "branch":
            rows.append(_plan_branch(name, env, source, inputs, notes))
        elif tracking == "semver":
            rows.append(_plan_semver(name, env, source, inputs, notes, range_changes, range_proposals))
        elif tracking == "digest":
            digest = source.digest if source and source.digest else ""
            notes.append("pinned by digest; changes only by a pull request")
            rows.append(
                EnvironmentPlan(
                    environment=name, tracking="digest", reference=digest, before=digest, after=digest, notes=notes
                )
            )
        else:
            rows.append(_plan_tag(name, env, source, inputs, notes))
    return ReleasePlan(
        version=pending,
        published=pending in registry_tags if pending else False,
        registry=registry_url,
        main_commit=main_commit,
        environments=rows,
        major_bump=inputs.major_bump,
        range_changes=range_changes,
        range_proposals=range_proposals,
    )


def read_sources(ctx: ReleaseContext, repo: Path) -> dict[str, PlatformSource | None]:
    """Every environment's platform source in a checkout."""
    return {name: read_platform_source(repo, env) for name, env in ctx.config.environments.items()}


def release_plan(ctx: ReleaseContext, *, version: str | None = None) -> ReleasePlan:
    """What each environment runs before and after ``version`` (default: the newest release).

    Raises:
        InvalidInputError: ``version`` is not a version.
    """
    if version is not None:
        validate_release_version(version)
    with ctx.checkout() as repo:
        main_commit = _head(ctx, repo)
        sources = read_sources(ctx, repo)
    branch_heads = ctx.git.remote_branches(ctx.remote)
    tags = ctx.registry.list_tags()
    return compute_plan(
        ctx.config,
        sources,
        registry_tags=tags,
        branch_heads=branch_heads,
        main_commit=main_commit,
        registry_url=ctx.registry.url,
        version=version,
    )


def discover_registry(config: FleetConfig, git: GitCli, *, workdir: Path | None = None) -> RegistryConfig:
    """Registry settings from fleet.yaml, else from the URL the clusters' OCIRepository reads.

    Raises:
        ConfigError: Neither names a registry.
    """
    configured = configured_registry(config)
    if configured is not None:
        return configured
    root = workdir or config.state_dir / "release"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="checkout-", dir=root) as tmp:
        repo = Path(tmp) / "repo"
        git.clone(config.remote_url, repo)
        git.checkout(repo, config.fleet_repo.default_branch)
        sources = {name: read_platform_source(repo, env) for name, env in config.environments.items()}
    derived = registry_from_sources(config, sources)
    if derived is None:
        raise ConfigError(
            "no OCI registry: add drivers.registry.url to fleet.yaml, pass --registry, "
            "or give an environment an OCIRepository with .spec.url"
        )
    return derived


def registry_override(config: FleetConfig, url: str | None, insecure: bool | None = None) -> RegistryConfig | None:
    """fleet.yaml's registry settings with the URL (and plain-HTTP flag) replaced, e.g. from ``--registry``.

    Returns:
        ``None`` when there is nothing to override (``url`` is ``None``).

    Raises:
        InvalidInputError: ``url`` is not an OCI repository URL.
    """
    if url is None:
        return None
    base = configured_registry(config)
    data: dict[str, Any] = base.model_dump() if base is not None else {}
    data["url"] = url
    if insecure is not None:
        data["insecure"] = insecure
    try:
        return RegistryConfig.model_validate(data)
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise InvalidInputError(f"--registry {url!r}: {message}") from None


def build_release_context(
    config: FleetConfig,
    *,
    registry: RegistryConfig | None = None,
    registry_password: str | None = None,
    github_token: str | None = None,
    progress: Progress = _quiet,
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


# -- proposals ----------------------------------------------------------------------------------------


class ProposedChange(BaseModel):
    """A one-scalar change to an environment's platform source, proposed by pull request."""

    environment: str
    file: str
    field: str = Field(description="The edited key, e.g. spec.ref.tag")
    old: str
    new: str
    branch: str
    commit: str | None = Field(description="The commit made now (None when the branch had it already)")
    pull_request: PullRequest | None = Field(description="None when nothing needed proposing")

    @property
    def summary(self) -> str:
        """One line for people."""
        if self.pull_request is None:
            return f"{self.environment} already has {self.field} {self.new}; nothing proposed"
        already = "" if self.pull_request.created else " (already open)"
        return (
            f"pull request #{self.pull_request.number}{already} {self.branch}: {self.file} {self.field} "
            f"{self.old} -> {self.new}: {self.pull_request.url}"
        )


def branch_component(value: str) -> str:
    """``value`` made safe as part of a git branch name (``^2.0`` -> ``2.0``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-.")
    safe = re.sub(r"\.{2,}", ".", safe)
    return safe.removesuffix(".lock") or "x"


def range_branch(environment: str, range_: str) -> str:
    """The branch of the pull request changing ``environment``'s semver range to ``range_``."""
    return f"{RELEASE_BRANCH_PREFIX}{environment}-range-{branch_component(range_)}"


def production_branch(environment: str, tag: str) -> str:
    """The branch of the pull request moving a fixed-tag ``environment`` to ``tag``."""
    return f"{RELEASE_BRANCH_PREFIX}{environment}-{branch_component(tag)}"


def propose_source_change(
    ctx: ReleaseContext,
    *,
    environment: str,
    field: Literal["tag", "semver"],
    value: str,
    branch: str,
    title: str,
    body: str,
    expect_old: str | None = None,
) -> ProposedChange:
    """Set ``.spec.ref.<field>`` of an environment's OCIRepository on a branch and open a pull request.

    Only that scalar changes (comments, quoting and order are kept). Idempotent: a
    branch that already carries the value is reused and its pull request returned.

    Args:
        ctx: The release context (with a hosting driver).
        environment: The environment whose platform source changes.
        field: ``tag`` (production) or ``semver`` (staging).
        value: The new value.
        branch: The pull request's branch.
        title: Commit subject and pull request title.
        body: Pull request description.
        expect_old: Refuse when the default branch no longer has this value.

    Raises:
        ReleaseError: No OCIRepository with that field in the environment's file; no hosting driver.
        ConflictError: The default branch's value is not ``expect_old`` any more.
    """
    if ctx.hosting is None:
        raise ReleaseError("no git hosting driver configured: cannot open a pull request")
    env = ctx.config.environment(environment)
    file = platform_file(env)
    path_keys = ("spec", "ref", field)
    with ctx.checkout() as repo:
        source = read_platform_source(repo, env)
        if source is None or source.kind != "OCIRepository":
            raise ReleaseError(f"{file} declares no OCIRepository for the platform stack")
        old = getattr(source, field)
        if old is None:
            raise ReleaseError(f"{file}: OCIRepository {source.name} has no .spec.ref.{field} to change")
        if expect_old is not None and old != expect_old:
            raise ConflictError(
                f"{file} changed on {ctx.default_branch}: .spec.ref.{field} is {old}, not {expect_old}; plan again"
            )
        unproposed = ProposedChange(
            environment=environment,
            file=file,
            field=".".join(path_keys),
            old=old,
            new=value,
            branch=branch,
            commit=None,
            pull_request=None,
        )
        if old == value:
            ctx.progress(f"{file} already has .spec.ref.{field} {value} on {ctx.default_branch}")
            return unproposed
        if branch in ctx.git.remote_branches(ctx.remote):
            ctx.git.checkout(repo, branch)
        else:
            ctx.git.checkout(repo, branch, start=f"origin/{ctx.default_branch}")
        target = paths.inside(repo, file)
        text = target.read_text(encoding="utf-8")

        def is_source(doc: CommentedMap) -> bool:
            return bool(doc.get("kind") == source.kind and (doc.get("metadata") or {}).get("name") == source.name)

        new_text, edits = set_scalar(text, is_source, path_keys, value, source=file)
        commit: str | None = None
        if edits:
            target.write_text(new_text, encoding="utf-8")
            commit = ctx.git.commit_all(repo, title, [file])
            ctx.git.push(repo, branch)
            ctx.progress(f"{branch}: {file} .spec.ref.{field} {old} -> {value} ({commit and commit[:12]})")
        else:
            on_branch = parse_platform_source(text, file=file)
            if on_branch is None or getattr(on_branch, field) != value:
                raise ReleaseError(f"{branch}: could not set .spec.ref.{field} in {file}")
            ctx.progress(f"{branch} already sets .spec.ref.{field} {value}")
    pull_request = ctx.hosting.open_pull_request(head=branch, base=ctx.default_branch, title=title, body=body)
    ctx.progress(f"pull request #{pull_request.number}: {pull_request.url}")
    return unproposed.model_copy(update={"commit": commit, "pull_request": pull_request})


def _environments_tracking(config: FleetConfig, kind: TrackingKind) -> list[str]:
    return [name for name, env in config.environments.items() if env.tracking.type is kind]


def _pick_environment(config: FleetConfig, environment: str | None, kind: TrackingKind) -> str:
    if environment is not None:
        env = config.environment(environment)
        if env.tracking.type is not kind:
            raise InvalidInputError(
                f"environment {environment} tracks by {env.tracking.type.value}, not by {kind.value}"
            )
        return environment
    names = _environments_tracking(config, kind)
    if len(names) != 1:
        what = "no environment" if not names else f"several environments ({', '.join(names)})"
        raise InvalidInputError(f"{what} track the platform by {kind.value}: name one with --env")
    return names[0]


def propose_range(ctx: ReleaseContext, *, range_: str, environment: str | None = None) -> ProposedChange:
    """Propose a new semver range for a semver-tracking environment (a major bump needs one).

    Raises:
        InvalidConstraintError: ``range_`` is not a Masterminds range (exit 2).
        InvalidInputError: No such semver-tracking environment.
    """
    parse_constraint(range_)
    if not range_.strip():
        raise InvalidInputError("an empty range would be ignored by Flux: give a range such as 1.3.x")
    name = _pick_environment(ctx.config, environment, TrackingKind.semver)
    tags = ctx.registry.list_tags()
    picks = resolve(range_, tags)
    title = f"{name}: platform semver range -> {range_}"
    file = platform_file(ctx.config.environments[name])
    body = "\n".join(
        [
            f"Changes `.spec.ref.semver` of the platform OCIRepository in `{file}` to `{range_}`.",
            "",
            f"With the tags now in `{ctx.registry.url}`, {name} would run **{picks or 'nothing (no tag matches)'}**.",
            "",
            f"Also update `environments.{name}.tracking.range` in fleet.yaml to `{range_}`.",
        ]
    )
    return propose_source_change(
        ctx,
        environment=name,
        field="semver",
        value=range_,
        branch=range_branch(name, range_),
        title=title,
        body=body,
    )


class ProductionPlan(BaseModel):
    """Moving a fixed-tag environment from one published tag to another."""

    environment: str
    file: str
    from_tag: str
    to_tag: str
    rollback: bool = Field(description="Going back to an earlier release")
    staging: dict[str, str | None] = Field(
        default_factory=dict, description="Semver-tracking environment -> what it runs now"
    )
    staging_ranges: dict[str, str] = Field(default_factory=dict)
    registry: str
    main_commit: str
    notes: list[str] = Field(default_factory=list)

    @property
    def noop(self) -> bool:
        """The environment runs ``to_tag`` already."""
        return self.from_tag == self.to_tag

    @property
    def staging_summary(self) -> str:
        """What the semver-tracking environments run, in one line."""
        if not self.staging:
            return "no environment tracks a semver range"
        return "; ".join(
            f"{name} runs {running or 'nothing'} (range {self.staging_ranges.get(name, '?')})"
            for name, running in self.staging.items()
        )

    @property
    def branch(self) -> str:
        """The pull request's branch."""
        return production_branch(self.environment, self.to_tag)

    @property
    def title(self) -> str:
        """Commit subject and pull request title."""
        what = "roll back platform" if self.rollback else "platform"
        return f"{self.environment}: {what} {self.from_tag} -> {self.to_tag}"

    def describe(self) -> str:
        """Markdown for the approval form and the pull request."""
        lines = [
            f"**{self.environment}**: `{self.from_tag}` -> `{self.to_tag}`" + (" (rollback)" if self.rollback else ""),
            "",
            f"- file: `{self.file}` (`.spec.ref.tag`, one line)",
            f"- staging: {self.staging_summary}",
            f"- registry: `{self.registry}` (tag `{self.to_tag}` is published)",
            f"- main: `{self.main_commit[:12]}`",
        ]
        lines.extend(f"- note: {note}" for note in self.notes)
        return "\n".join(lines)


def plan_production(
    ctx: ReleaseContext,
    *,
    version: str | None = None,
    rollback: bool = False,
    environment: str | None = None,
) -> ProductionPlan:
    """Plan moving a fixed-tag environment to ``version`` (or back to the previous release).

    Raises:
        InvalidInputError: Neither or both of ``version`` and ``rollback``; bad environment.
        ReleaseError: The target is not published; nothing earlier to roll back to.
    """
    if (version is None) == (not rollback):
        raise InvalidInputError("give --version X.Y.Z or --rollback (one of them)")
    name = _pick_environment(ctx.config, environment, TrackingKind.tag)
    env = ctx.config.environments[name]
    with ctx.checkout() as repo:
        main_commit = _head(ctx, repo)
        sources = read_sources(ctx, repo)
    source = sources.get(name)
    if source is None or source.kind != "OCIRepository" or not source.tag:
        raise ReleaseError(f"{platform_file(env)} declares no OCIRepository with .spec.ref.tag")
    tags = ctx.registry.list_tags()
    from_tag = source.tag
    if rollback:
        target = previous_release(tags, from_tag)
        if target is None:
            raise ReleaseError(f"no published release before {from_tag} in {ctx.registry.url} to roll back to")
    else:
        target = validate_tag(version or "")
    if target not in tags:
        raise ReleaseError(
            f"{target} is not published in {ctx.registry.url}: publish it first (sandbox release --version {target})"
        )
    staging: dict[str, str | None] = {}
    ranges: dict[str, str] = {}
    for other in _environments_tracking(ctx.config, TrackingKind.semver):
        other_source = sources.get(other)
        constraint = (other_source.semver if other_source else None) or ctx.config.environments[other].tracking.range
        ranges[other] = constraint or ""
        try:
            staging[other] = resolve(constraint or "", tags)
        except SandboxError:
            staging[other] = None
    notes: list[str] = []
    if staging and target not in staging.values():
        notes.append(f"no semver-tracking environment runs {target} now")
    is_older = parse_tag(target) and parse_tag(from_tag) and _version_key(target) < _version_key(from_tag)
    if is_older and not rollback:
        notes.append(f"{target} is older than {from_tag}: this is a rollback")
    return ProductionPlan(
        environment=name,
        file=platform_file(env),
        from_tag=from_tag,
        to_tag=target,
        rollback=rollback or bool(is_older),
        staging=staging,
        staging_ranges=ranges,
        registry=ctx.registry.url,
        main_commit=main_commit,
        notes=notes,
    )


def propose_production(ctx: ReleaseContext, plan: ProductionPlan, *, reason: str = "") -> ProposedChange:
    """Open the pull request that moves the environment's ``.spec.ref.tag`` (after approval).

    Raises:
        ConflictError: The default branch's tag is not the plan's ``from_tag`` any more.
    """
    body = "\n".join(
        [
            plan.describe(),
            "",
            f"Approved in the release flow. Reason: {reason.strip() or '(none given)'}",
            "",
            "Merging this pull request is the release: Flux pulls the new tag at the next interval.",
        ]
    )
    return propose_source_change(
        ctx,
        environment=plan.environment,
        field="tag",
        value=plan.to_tag,
        branch=plan.branch,
        title=plan.title,
        body=body,
        expect_old=plan.from_tag,
    )


class ReleaseReport(BaseModel):
    """A published release, what it changes per environment, and the range changes it proposed."""

    published: PublishedRelease
    plan: ReleasePlan = Field(description="Before -> after of every environment, for the published version")
    range_proposals: list[ProposedChange] = Field(
        default_factory=list, description="Pull requests widening a semver range that does not admit the release"
    )
    warnings: list[str] = Field(default_factory=list)

    def lines(self) -> list[str]:
        """What happened, one line each (warnings first)."""
        out = [f"warning: {warning}" for warning in self.warnings]
        out.append(self.published.summary)
        by_env = {change.environment: change for change in self.range_proposals}
        for row in self.plan.environments:
            change = by_env.get(row.environment)
            if row.tracking == "semver" and change is not None:
                out.append(
                    f"{row.environment}: range {row.reference} does not admit {self.published.version}: "
                    f"range change proposed: {change.summary}"
                )
            elif row.tracking == "semver":
                moves = f"moves {row.before or '(nothing)'} -> {row.after}" if row.changes else "does not move"
                out.append(f"{row.environment}: range {row.reference} {moves}")
            elif row.tracking in ("tag", "digest"):
                out.append(f"{row.environment}: stays at {row.before} until an approved pull request moves it")
        if self.plan.major_bump:
            out.append(f"MAJOR BUMP: {self.published.version} is a breaking release")
        return out


__all__ = [
    "PLATFORM_DIR",
    "PLATFORM_FILE",
    "PLATFORM_SOURCE",
    "EnvironmentPlan",
    "PlatformSource",
    "ProductionPlan",
    "ProposedChange",
    "PublishedRelease",
    "ReleaseContext",
    "ReleaseDecision",
    "ReleaseError",
    "ReleaseExistsError",
    "ReleasePlan",
    "ReleaseReport",
    "TaggedRelease",
    "branch_component",
    "build_release_context",
    "compute_plan",
    "configured_registry",
    "decide_release",
    "discover_registry",
    "newest_release",
    "parse_platform_source",
    "plan_production",
    "platform_file",
    "previous_release",
    "production_branch",
    "propose_production",
    "propose_range",
    "propose_source_change",
    "range_branch",
    "publish_artifact",
    "read_platform_source",
    "registry_credentials",
    "registry_from_sources",
    "registry_override",
    "release",
    "release_plan",
    "source_url",
    "suggest_range",
    "tag_release",
    "validate_release_version",
]
