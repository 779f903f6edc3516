"""Watch a merged change land on a long-lived environment.

The seed: after the pull request merges, "monitor the change reconciliation and
deployment on the development cluster". Landed means, on the environment's
cluster:

* the root Kustomization (``flux-system/flux-system``) reports in
  ``status.lastAppliedRevision`` the merged commit or a descendant of it (the
  branch may have moved on since the merge);
* every GitRepository tracking the same repository and branch as the root has
  fetched it too;
* every Kustomization and HelmRelease is Ready for its current generation (a
  suspended one is not), and every Kustomization has applied its source's
  current revision.

An applier that is ``Stalled`` ends the wait at once: Flux will not retry it.

Waiting uses watches (:func:`sandbox.flux.watch_until`), never a sleep loop; at
the timeout whatever is still stuck is named with its reason and message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from sandbox.config import FleetConfig
from sandbox.drivers.cluster import (
    FLUX_NAMESPACE,
    GITREPOSITORY_API,
    HELMRELEASE_API,
    KUSTOMIZATION_API,
    OCIREPOSITORY_API,
    ClusterDriver,
    Manifest,
    ObjectRef,
)
from sandbox.drivers.git import GitDriver
from sandbox.drivers.git_hosting import PullRequest
from sandbox.errors import InvalidInputError, NotReadyError, PermanentError
from sandbox.flux import Readiness, readiness, watch_until
from sandbox.progress import Progress, quiet

#: The root Kustomization ``flux bootstrap`` creates on every cluster.
ROOT_KUSTOMIZATION = ObjectRef(KUSTOMIZATION_API, "Kustomization", "flux-system", FLUX_NAMESPACE)
#: The GitRepository the root Kustomization reads the fleet repository from.
ROOT_SOURCE = ObjectRef(GITREPOSITORY_API, "GitRepository", "flux-system", FLUX_NAMESPACE)

#: What is watched: the appliers and their sources.
WATCHED_KINDS: tuple[tuple[str, str], ...] = (
    (KUSTOMIZATION_API, "Kustomization"),
    (HELMRELEASE_API, "HelmRelease"),
    (GITREPOSITORY_API, "GitRepository"),
    (OCIREPOSITORY_API, "OCIRepository"),
)

_SHA_AT_END = re.compile(r"([0-9a-f]{40})\Z")
_REVISION = re.compile(r"[0-9a-f]{7,40}")  # fullmatch


def revision_sha(revision: str | None) -> str | None:
    """The commit of a Flux git revision (``main@sha1:<sha>``, ``main/<sha>``, ``sha1:<sha>`` or a bare sha)."""
    match = _SHA_AT_END.search(revision or "")
    return match.group(1) if match else None


def check_revision(revision: str) -> str:
    """A commit id as given on the command line (7 to 40 hex digits), lower-cased.

    Raises:
        InvalidInputError: Anything else.
    """
    value = revision.strip().lower()
    if not _REVISION.fullmatch(value):
        raise InvalidInputError(f"--revision {revision!r} is not a commit id (7 to 40 hexadecimal digits)")
    return value


def same_commit(wanted: str, applied: str) -> bool:
    """Whether ``applied`` is the commit ``wanted`` names (a full sha or a prefix of one)."""
    return applied.startswith(wanted)


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _why(obj: Mapping[str, Any]) -> str:
    state = readiness(obj)
    return f"{state.reason or 'NoStatus'}: {state.message or 'no Ready condition reported yet'}"


def _git_target(obj: Mapping[str, Any]) -> tuple[str, str]:
    spec = obj.get("spec") or {}
    return str(spec.get("url", "")).rstrip("/"), str((spec.get("ref") or {}).get("branch") or "")


@dataclass
class LandingState:
    """How far a revision got on a cluster, from one snapshot of its Flux objects."""

    root_revision: str | None = None
    root_has_revision: bool = False
    objects: list[Readiness] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Appliers in a terminal failure (``Stalled=True``): waiting longer cannot help.
    stalled: list[str] = field(default_factory=list)

    @property
    def landed(self) -> bool:
        """The revision is applied and everything is Ready."""
        return self.root_has_revision and not self.problems and bool(self.objects)


def assess(snapshot: Mapping[ObjectRef, Manifest], revision: str, contains: Callable[[str, str], bool]) -> LandingState:
    """Where ``revision`` is on a cluster, from a snapshot of its Kustomizations, HelmReleases and sources.

    Args:
        snapshot: The watched objects by reference.
        revision: The commit that must be applied.
        contains: ``contains(revision, sha)``: whether commit ``sha`` includes ``revision``.
    """
    state = LandingState()
    root = snapshot.get(ROOT_KUSTOMIZATION)
    if root is None:
        state.problems.append(f"{ROOT_KUSTOMIZATION}: not found (is Flux bootstrapped on this cluster?)")
    else:
        state.root_revision = str(_status(root).get("lastAppliedRevision") or "") or None
        applied_sha = revision_sha(state.root_revision)
        state.root_has_revision = bool(applied_sha) and contains(revision, str(applied_sha))
        if not state.root_has_revision:
            state.problems.append(
                f"{ROOT_KUSTOMIZATION}: last applied revision {state.root_revision or 'none'}, "
                f"waiting for {revision[:12]}"
            )
    sources = {ref: obj for ref, obj in snapshot.items() if ref.kind in ("GitRepository", "OCIRepository")}
    root_source = sources.get(ROOT_SOURCE)
    if root_source is not None:
        tracked = _git_target(root_source)
        for ref, source in sorted(sources.items()):
            if ref.kind != "GitRepository" or _git_target(source) != tracked:
                continue
            artifact = str((_status(source).get("artifact") or {}).get("revision") or "")
            sha = revision_sha(artifact)
            if not sha or not contains(revision, sha):
                state.problems.append(
                    f"{ref}: has revision {artifact or 'none'}, not yet {revision[:12]}: {_why(source)}"
                )
    for ref, obj in sorted(snapshot.items()):
        if ref.kind not in ("Kustomization", "HelmRelease"):
            continue
        ready = readiness(obj)
        state.objects.append(ready)
        if not ready.ready:
            state.problems.append(ready.line())
            if ready.stalled:
                state.stalled.append(ready.line())
            continue
        if ref.kind == "Kustomization":
            source_ref = (obj.get("spec") or {}).get("sourceRef") or {}
            kind = str(source_ref.get("kind", ""))
            own_source = sources.get(
                ObjectRef(
                    GITREPOSITORY_API if kind == "GitRepository" else OCIREPOSITORY_API,
                    kind,
                    str(source_ref.get("name", "")),
                    str(source_ref.get("namespace") or ref.namespace),
                )
            )
            wanted = str((_status(own_source).get("artifact") or {}).get("revision") or "") if own_source else ""
            applied = str(_status(obj).get("lastAppliedRevision") or "")
            if wanted and applied != wanted:
                state.problems.append(f"{ref}: applied {applied or 'nothing'}, its source has {wanted}")
    return state


@dataclass(frozen=True)
class Landing:
    """A revision that landed on an environment."""

    environment: str
    revision: str
    applied: str
    objects: list[Readiness]

    def summary(self) -> str:
        """One line for people."""
        kinds = [o.ref.kind for o in self.objects]
        return (
            f"{self.environment}: revision {self.revision[:12]} applied ({ROOT_KUSTOMIZATION} at {self.applied}); "
            f"{kinds.count('Kustomization')} Kustomization(s) and {kinds.count('HelmRelease')} HelmRelease(s) Ready"
        )


def _look(cluster: ClusterDriver) -> dict[ObjectRef, Manifest]:
    """Every watched object, listed kind by kind in :data:`WATCHED_KINDS` order (appliers before sources)."""
    return {ObjectRef.of(obj): obj for api_version, kind in WATCHED_KINDS for obj in cluster.list(api_version, kind)}


def wait_for_revision(
    cluster: ClusterDriver,
    revision: str,
    timeout: float,
    *,
    environment: str = "the cluster",
    contains: Callable[[str, str], bool] = same_commit,
    progress: Progress = quiet,
) -> Landing:
    """Wait until ``revision`` is applied on ``cluster`` and every Flux applier is Ready.

    Raises:
        NotReadyError: At the timeout, naming each object that is stuck and why;
            at once when an applier is stalled.
    """
    known: dict[tuple[str, str], bool] = {}

    def cached_contains(wanted: str, sha: str) -> bool:
        if (wanted, sha) not in known:
            known[(wanted, sha)] = contains(wanted, sha)
        return known[(wanted, sha)]

    last = [""]

    def done(snapshot: dict[ObjectRef, Manifest]) -> bool:
        state = assess(snapshot, revision, cached_contains)
        ready = sum(1 for o in state.objects if o.ready)
        line = (
            f"{environment}: root at {state.root_revision or 'nothing applied'}"
            f"{' (includes ' + revision[:12] + ')' if state.root_has_revision else ''}; "
            f"{ready}/{len(state.objects)} Kustomizations and HelmReleases Ready"
        )
        if line != last[0]:
            progress(line)
            last[0] = line
        return state.landed or bool(state.stalled)

    deadline = time.monotonic() + timeout
    while True:
        ok, snapshot = watch_until(cluster, WATCHED_KINDS, done, max(0.0, deadline - time.monotonic()))
        if not ok:
            break
        # The watch's snapshot joins one stream per kind, each as far as it got: a
        # HelmRelease an applied Kustomization just created (or changed) may not have
        # arrived on its stream yet. So "landed" is decided on one fresh look at every
        # kind, appliers first, taken after the streams said so.
        snapshot = _look(cluster)
        fresh = assess(snapshot, revision, cached_contains)
        if fresh.landed or fresh.stalled or time.monotonic() >= deadline:
            break
    state = assess(snapshot, revision, cached_contains)
    if state.stalled:
        raise NotReadyError(
            f"{environment}: revision {revision[:12]} cannot land: stalled (Flux will not retry until the "
            f"object changes): {'; '.join(state.stalled)}"
        )
    if not state.landed:
        raise NotReadyError(
            f"{environment}: revision {revision[:12]} has not landed after {timeout:g}s: "
            + ("; ".join(state.problems) or "no Kustomization or HelmRelease found")
        )
    return Landing(environment, revision, state.root_revision or "", state.objects)


def git_contains(git: GitDriver, checkout: Path, fetch: Callable[[], None]) -> Callable[[str, str], bool]:
    """``contains(wanted, sha)`` answered by git in ``checkout``.

    A commit unknown there is fetched for (once per commit): the branch may have
    moved on since the checkout was last updated.
    """
    attempted: set[str] = set()

    def resolve(rev: str) -> str | None:
        found = git.rev_parse(checkout, rev)
        if found is None and rev not in attempted:
            attempted.add(rev)
            fetch()
            found = git.rev_parse(checkout, rev)
        return found

    def contains(wanted: str, sha: str) -> bool:
        if sha.startswith(wanted):
            return True
        full_wanted, full_sha = resolve(wanted), resolve(sha)
        if full_wanted is None or full_sha is None:
            return False
        return git.is_ancestor(checkout, full_wanted, full_sha)

    return contains


def default_revision(config: FleetConfig, cluster: ClusterDriver, git: GitDriver) -> str:
    """The tip of the branch the cluster's root GitRepository tracks, on the fleet remote.

    Raises:
        PermanentError: The root source is missing, tracks no branch, or the branch is not on the remote.
    """
    source = cluster.get(ROOT_SOURCE)
    if source is None:
        raise PermanentError(f"{ROOT_SOURCE} not found on the cluster: is Flux bootstrapped? (or pass --revision)")
    branch = _git_target(source)[1]
    if not branch:
        raise PermanentError(f"{ROOT_SOURCE} tracks no branch; pass --revision")
    sha = git.remote_branches(config.remote_url).get(branch)
    if sha is None:
        raise PermanentError(f"branch {branch!r} (tracked by {ROOT_SOURCE}) is not on the fleet remote")
    return sha


def watch_environment(
    config: FleetConfig,
    env: str,
    *,
    git: GitDriver,
    terraform: Any,
    revision: str | None = None,
    timeout: float | None = None,
    progress: Progress = quiet,
) -> Landing:
    """Wait until ``revision`` (default: the tip of the branch the root tracks) landed on environment ``env``.

    Raises:
        InvalidInputError: Unknown environment, a malformed revision, a timeout not above 0.
        EnvironmentNotProvisionedError: No cluster known for ``env``.
        NotReadyError: At the timeout, naming what is stuck.
    """
    from sandbox.environments import connect_environment, update_checkout

    config.environment(env)
    wanted = check_revision(revision) if revision is not None else None
    wait = config.drivers.cluster.ready_timeout_seconds if timeout is None else timeout
    if wait <= 0:
        raise InvalidInputError(f"--timeout must be above 0 seconds, not {timeout:g}")
    cluster = connect_environment(config, env, terraform, git)
    if wanted is None:
        wanted = default_revision(config, cluster, git)
        progress(f"{env}: waiting for revision {wanted[:12]} (tip of the branch its root GitRepository tracks)")
    else:
        progress(f"{env}: waiting for revision {wanted}")
    checkout = update_checkout(config, env, git)
    contains = git_contains(git, checkout, lambda: git.fetch(checkout))
    return wait_for_revision(cluster, wanted, wait, environment=env, contains=contains, progress=progress)


class LandingResult(BaseModel):
    """What the promotion flow's last step saw."""

    outcome: str = Field(description="landed, awaiting merge or skipped")
    summary: str
    revision: str | None = Field(default=None, description="The merged commit, once merged")
    pull_request: str | None = Field(default=None, description="The pull request's URL")


def watch_promotion(ctx: Any, *, timeout: float | None = None) -> LandingResult:
    """The promotion's last step: once its pull request merged, wait for its target to apply it.

    The target is development, or the canary the sandbox was cloned from
    (:func:`sandbox.stages.promote.promotion_target`).

    Args:
        ctx: The sandbox's :class:`~sandbox.context.SandboxContext`.
        timeout: Seconds to wait (default ``drivers.cluster.ready_timeout_seconds``).

    Raises:
        NotReadyError: Merged, but the target did not converge in time.
    """
    from sandbox.models import Stage
    from sandbox.stages.promote import promotion_target

    record = ctx.record
    target = promotion_target(ctx.config, record.source_env)
    promoted = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.promote)
    if promoted is None:
        return LandingResult(outcome="skipped", summary=f"{record.name} is not promoted yet")
    data = (promoted.get("details") or {}).get("pull_request")
    if not data:
        return LandingResult(outcome="skipped", summary="no pull request to watch")
    pr = PullRequest.model_validate(data)
    merged = ctx.drivers.hosting.merged_revision(pr)
    if merged is None:
        return LandingResult(
            outcome="awaiting merge",
            summary=(
                f"pull request {pr.url} is not merged yet; once it is, 'sandbox watch {target}' "
                f"(or 'sandbox promote {record.name}' again) waits for {target} to apply it"
            ),
            pull_request=pr.url,
        )
    ctx.progress(f"pull request {pr.url} merged as {merged[:12]}; watching {target}")
    landing = watch_environment(
        ctx.config,
        target,
        git=ctx.drivers.git,
        terraform=ctx.drivers.terraform,
        revision=merged,
        timeout=timeout,
        progress=ctx.progress,
    )
    return LandingResult(outcome="landed", summary=landing.summary(), revision=merged, pull_request=pr.url)
