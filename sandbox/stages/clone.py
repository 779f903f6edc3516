"""The clone stage: branch, copy the source environment's cluster directory, retarget, commit, push.

Also the clone step alone on a checkout the user already has (``sandbox clone``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import fleetrepo, paths
from sandbox.context import SandboxContext
from sandbox.drivers.git import GitDriver
from sandbox.errors import ConflictError, InvalidInputError, PermanentError
from sandbox.lifecycle_request import SandboxChange
from sandbox.manifest_objects import load_mappings
from sandbox.models import SandboxKind, Stage, StageResult
from sandbox.naming import validate_sandbox_name
from sandbox.progress import Progress, quiet
from sandbox.yamledit import set_scalar


def _object_selector(kind: str, name: str) -> Callable[[Any], bool]:
    def select(doc: Any) -> bool:
        return bool(doc.get("kind") == kind and (doc.get("metadata") or {}).get("name") == name)

    return select


def _apply_change(repo: Path, cluster_root: Path, change: SandboxChange) -> list[str]:
    """Make a change's scalar edits in the sandbox directory (idempotent); no file outside the checkout."""
    changed: list[str] = []
    for edit in change.edits:
        path = paths.inside(repo, cluster_root / edit.file)
        if not path.is_file():
            raise InvalidInputError(f"change: {edit.file} does not exist in the sandbox")
        text = path.read_text(encoding="utf-8")
        select = _object_selector(edit.kind, edit.name)
        if not any(select(d) for d in load_mappings(text)):
            raise InvalidInputError(f"change: no {edit.kind} {edit.name!r} in {edit.file}")
        new_text, edits = set_scalar(text, select, tuple(edit.path), edit.value, source=edit.file)
        path.write_text(new_text, encoding="utf-8")
        changed.extend(f"{edit.file}: {'.'.join(edit.path)} {e.old} -> {e.new}" for e in edits)
    return changed


def clone_into_checkout(
    repo: Path,
    *,
    source_env: str,
    name: str,
    retarget_from: str | None,
    retarget_to: str | None,
    progress: Progress = quiet,
) -> dict[str, Any]:
    """Copy ``clusters/<source_env>`` to ``clusters/<name>`` in a checkout and retarget its git sources.

    Returns:
        What was done: copied files, excluded files, retargeted sources.
    """
    source = repo / fleetrepo.cluster_dir(source_env)
    target = repo / fleetrepo.cluster_dir(name)
    report = fleetrepo.copy_cluster_dir(source, target, repo=repo)
    excluded = ", ".join(report.excluded) or "none"
    progress(f"copied {len(report.copied)} files from clusters/{source_env} (excluded: {excluded})")
    retargets = []
    if retarget_from and retarget_to:
        retargets = fleetrepo.retarget_git_sources(target, retarget_from, retarget_to, repo=repo)
        if retargets:
            for r in retargets:
                progress(f"retargeted GitRepository in {r.file}: {r.edit.old} -> {r.edit.new}")
        else:
            progress("no GitRepository tracks the default branch in this directory; nothing to retarget")
    return {
        "copied": report.copied,
        "excluded": report.excluded,
        "retargeted": [f"{r.file}: {r.edit.old} -> {r.edit.new}" for r in retargets],
    }


def clone(ctx: SandboxContext, change: SandboxChange | None = None) -> StageResult:
    """Branch, copy the source's cluster directory (no gotk-sync.yaml), retarget, commit, push."""
    record = ctx.record
    branch = record.branch or ""
    default = ctx.config.fleet_repo.default_branch
    git = ctx.drivers.git
    repo = ctx.ensure_checkout()
    if git.rev_parse(repo, f"refs/remotes/origin/{branch}") is not None:
        # The branch was pushed by an earlier attempt that crashed before the
        # inventory heard of it: the clone is done.
        ctx.on_branch(branch)
        if not (repo / ctx.sandbox_path).is_dir():
            raise ConflictError(f"branch {branch!r} exists on the remote without {ctx.sandbox_path}/")
        head = git.rev_parse(repo, "HEAD")
        return StageResult(
            stage=Stage.clone,
            summary=f"branch {branch} already on the remote",
            details={"branch": branch, "commit": head},
        )
    if git.rev_parse(repo, f"refs/remotes/origin/{default}") is None:
        raise PermanentError(f"default branch {default!r} not found on the fleet remote")
    git.checkout(repo, branch, start=f"origin/{default}")
    git.reset_hard(repo, f"origin/{default}")  # drop a half-made copy from a crash
    target = repo / ctx.sandbox_path
    if git.list_tree(repo, f"origin/{default}", ctx.sandbox_path):
        raise ConflictError(f"{ctx.sandbox_path}/ already exists on {default}; pick another sandbox name")
    if target.exists():
        shutil.rmtree(target)  # untracked files of a copy a crash interrupted (reset --hard keeps them)
    platform = record.kind is SandboxKind.platform
    details = clone_into_checkout(
        repo,
        source_env=record.source_env,
        name=record.name,
        retarget_from=default if platform else None,
        retarget_to=branch if platform else None,
        progress=ctx.progress,
    )
    who = f"{record.ticket}: " if record.ticket else ""
    git.commit_all(repo, f"{who}clone clusters/{record.source_env} into {ctx.sandbox_path}", [ctx.sandbox_path])
    if change and change.edits:
        details["change"] = _apply_change(repo, target, change)
        git.commit_all(repo, f"{who}{change.message}", [ctx.sandbox_path])
        for line in details["change"]:
            ctx.progress(f"change: {line}")
    git.push(repo, branch)
    details["branch"] = branch
    details["commit"] = git.rev_parse(repo, "HEAD")
    return StageResult(
        stage=Stage.clone,
        summary=f"clusters/{record.source_env} cloned into {ctx.sandbox_path} on branch {branch}",
        details=details,
    )


# -- the clone step alone, on a local checkout (``sandbox clone``) -------------


@dataclass(frozen=True)
class LocalCloneResult:
    """What ``clone_local_checkout`` did."""

    branch: str
    commit: str | None
    noop: bool
    details: dict[str, Any]


def clone_local_checkout(
    git: GitDriver,
    repo: Path,
    *,
    source_env: str,
    name: str,
    branch: str | None,
    default_branch: str,
    environments: list[str],
    protected: set[str],
    ticket_pattern: str,
    progress: Progress = quiet,
) -> LocalCloneResult:
    """The clone stage on a checkout the user already has.

    With ``branch`` (a platform-change sandbox): ``branch`` is created from the
    default branch and the copy's GitRepository is retargeted to it. Without it
    (a performance sandbox): the copy keeps the source's version tracking and is
    committed on the current branch, or on ``perf-<name>`` when the current
    branch is the default one, which is never moved.

    Raises:
        InvalidInputError: Unknown environment, invalid name or branch.
        ConflictError: The target directory exists with other content, or ``branch``
            exists and holds another sandbox.

    Args:
        protected: Names that are never a sandbox (long-lived environments).
    """
    from sandbox.naming import validate_branch

    validate_sandbox_name(name, protected | {"flux-system"})
    if source_env not in environments:
        raise InvalidInputError(f"unknown environment {source_env!r} (found: {', '.join(environments)})")
    if branch is not None:
        validate_branch(branch, ticket_pattern)
    if git.rev_parse(repo, default_branch) is None:
        raise InvalidInputError(f"default branch {default_branch!r} not found in {repo}")
    target_rel = fleetrepo.cluster_dir(name)
    if branch is not None:
        _refuse_another_sandboxs_branch(git, repo, branch, default_branch, name)
    current = git.current_branch(repo)
    if branch is not None:
        work_branch = branch
        start = default_branch
    else:
        work_branch = current if current != default_branch else f"perf-{name}"
        start = current
    retarget_to = branch
    source_rel = fleetrepo.cluster_dir(source_env)
    paths.entries(repo, source_rel)  # refused before anything changes when it leads outside the checkout
    # Render what the clone would produce, so an existing identical target is a no-op. The
    # scratch copy keeps the repository's layout, so links that stay inside it still do.
    with tempfile_dir() as scratch:
        shutil.copytree(repo / source_rel, scratch / source_rel, symlinks=True)
        expected = scratch / target_rel
        fleetrepo.copy_cluster_dir(scratch / source_rel, expected, repo=scratch)
        if retarget_to:
            fleetrepo.retarget_git_sources(expected, default_branch, retarget_to, repo=scratch)
        created = git.rev_parse(repo, f"refs/heads/{work_branch}") is None
        git.checkout(repo, work_branch, start=start)
        target = repo / target_rel
        if target.exists():
            matches = fleetrepo.sandbox_copy_matches(expected, target, repo=repo, source_repo=scratch)
            if matches and not (target / fleetrepo.SYNC_FILE).exists():
                progress(f"{target_rel}/ already holds this clone; nothing to do")
                return LocalCloneResult(work_branch, git.rev_parse(repo, "HEAD"), True, {})
            if created:  # leave nothing half-done: no new branch behind a refusal
                git.checkout(repo, current)
                git.delete_branch(repo, work_branch)
            raise ConflictError(f"{target_rel}/ already exists with different content")
    details = clone_into_checkout(
        repo,
        source_env=source_env,
        name=name,
        retarget_from=default_branch if retarget_to else None,
        retarget_to=retarget_to,
        progress=progress,
    )
    commit = git.commit_all(repo, f"clone clusters/{source_env} into {target_rel}", [target_rel])
    return LocalCloneResult(work_branch, commit, False, details)


def _refuse_another_sandboxs_branch(git: GitDriver, repo: Path, branch: str, default_branch: str, name: str) -> None:
    """Refuse ``branch`` when it exists and carries a sandbox directory other than ``clusters/<name>``.

    A sandbox branch holds one sandbox: committing a second one onto it would
    make its pull request promote both.

    Raises:
        ConflictError: Naming the other sandbox's directory.
    """
    default_dirs = set(git.list_tree(repo, default_branch, fleetrepo.CLUSTERS_DIR, directories=True))
    for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
        if git.rev_parse(repo, ref) is None:
            continue
        others = sorted(
            d
            for d in git.list_tree(repo, ref, fleetrepo.CLUSTERS_DIR, directories=True)
            if d not in default_dirs and d != name
        )
        if others:
            raise ConflictError(
                f"branch {branch!r} is sandbox {others[0]!r}'s ({fleetrepo.cluster_dir(others[0])}/); "
                "choose another --branch"
            )


def tempfile_dir() -> Any:
    """A temporary directory as a ``Path`` context manager."""
    import contextlib
    import tempfile

    @contextlib.contextmanager
    def manager() -> Any:
        with tempfile.TemporaryDirectory(prefix="fleet-sandbox-") as raw:
            yield Path(raw)

    return manager()
