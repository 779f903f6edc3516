"""The release plan: what each long-lived environment runs before and after a release."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import semver
from pydantic import BaseModel, Field

from sandbox.config import EnvironmentConfig, FleetConfig
from sandbox.errors import SandboxError
from sandbox.release.context import ReleaseContext
from sandbox.release.platform_source import PlatformSource, platform_file, read_platform_source
from sandbox.release.proposals import production_branch, range_branch
from sandbox.release.versions import newest_release, release_tags, suggest_range, validate_release_version, version_key
from sandbox.versions import parse_constraint, parse_tag, resolve


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
    return than is None or parse_tag(than) is None or version_key(version) > version_key(than)


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
        return version_key(self.pending) if self.pending and parse_tag(self.pending) else None


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
    if pending and parse_tag(tag) and parse_tag(pending) and version_key(pending) > version_key(tag):
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
    earlier = [version_key(t) for t in release_tags(before_tags)]
    pending_version = version_key(pending) if pending and parse_tag(pending) else None
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
        main_commit = ctx.head(repo)
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
