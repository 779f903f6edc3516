"""Production: moving a fixed-tag environment to a published release (or back) by an approved pull request."""

from __future__ import annotations

from pydantic import BaseModel, Field

from sandbox.config import TrackingKind
from sandbox.drivers.registry import validate_tag
from sandbox.errors import InvalidInputError, SandboxError
from sandbox.release.context import ReleaseContext
from sandbox.release.errors import ReleaseError
from sandbox.release.plan import read_sources
from sandbox.release.platform_source import platform_file
from sandbox.release.proposals import (
    ProposedChange,
    environments_tracking,
    pick_environment,
    production_branch,
    propose_source_change,
)
from sandbox.release.versions import previous_release, version_key
from sandbox.versions import parse_tag, resolve


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
    name = pick_environment(ctx.config, environment, TrackingKind.tag)
    env = ctx.config.environments[name]
    with ctx.checkout() as repo:
        main_commit = ctx.head(repo)
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
    for other in environments_tracking(ctx.config, TrackingKind.semver):
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
    is_older = parse_tag(target) and parse_tag(from_tag) and version_key(target) < version_key(from_tag)
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
