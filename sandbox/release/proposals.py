"""Proposing a change of an environment's platform source by pull request (one scalar, round-trip edited)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field
from ruamel.yaml.comments import CommentedMap

from sandbox import paths
from sandbox.config import FleetConfig, TrackingKind
from sandbox.drivers.git_hosting import PullRequest
from sandbox.errors import ConflictError, InvalidInputError
from sandbox.release.context import ReleaseContext
from sandbox.release.errors import ReleaseError
from sandbox.release.platform_source import parse_platform_source, platform_file, read_platform_source
from sandbox.versions import parse_constraint, resolve
from sandbox.yamledit import set_scalar

#: Branches of release pull requests start with this.
RELEASE_BRANCH_PREFIX = "release/"


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


def environments_tracking(config: FleetConfig, kind: TrackingKind) -> list[str]:
    return [name for name, env in config.environments.items() if env.tracking.type is kind]


def pick_environment(config: FleetConfig, environment: str | None, kind: TrackingKind) -> str:
    if environment is not None:
        env = config.environment(environment)
        if env.tracking.type is not kind:
            raise InvalidInputError(
                f"environment {environment} tracks by {env.tracking.type.value}, not by {kind.value}"
            )
        return environment
    names = environments_tracking(config, kind)
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
    name = pick_environment(ctx.config, environment, TrackingKind.semver)
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
