"""The promote stage: copy the sandbox back to development (or the canary it came from), push, open a pull request."""

from __future__ import annotations

from typing import Any

from sandbox import fleetrepo, paths
from sandbox.config import FleetConfig
from sandbox.context import SandboxContext
from sandbox.errors import ConflictError, PermanentError
from sandbox.models import SandboxKind, SandboxStatus, Stage, StageResult


class PromotionRefusedError(PermanentError):
    """The sandbox may not be promoted (yet): not validated or not torn down."""


#: The long-lived environment platform sandboxes are promoted back to.
PROMOTION_TARGET = "development"

#: How much of the unified diff a pull request body quotes at most.
PR_DIFF_LIMIT = 6000


def promotion_target(config: FleetConfig, source_env: str) -> str:
    """The environment a platform sandbox is promoted back to: development, or the canary it was cloned from.

    A canary (``canary: true``, e.g. the example fleet's ``local``) has a cluster directory of its own: its
    Flux install, sources and platform differ from development's. The sandbox's directory is a copy of the
    canary's, so it goes back there; copied over development's it would replace development's whole directory
    (its Flux components, its applications) with the canary's.
    """
    env = config.environments.get(source_env)
    if source_env != PROMOTION_TARGET and env is not None and env.canary:
        return source_env
    return PROMOTION_TARGET


def target_dir(config: FleetConfig, target: str) -> str:
    """The repository path of an environment's cluster directory (``clusters/development``)."""
    env = config.environments.get(target)
    return env.cluster_dir.strip("/") if env else fleetrepo.cluster_dir(target)


def development_dir(config: FleetConfig) -> str:
    """The repository path of development's cluster directory (``clusters/development``)."""
    return target_dir(config, PROMOTION_TARGET)


def check_promotable(ctx: SandboxContext) -> None:
    """Refuse a promotion before validation passed and teardown finished.

    Raises:
        PromotionRefusedError: Naming what is missing.
    """
    record = ctx.record
    validation = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.validate)
    if not validation or not (validation.get("details") or {}).get("passed"):
        raise PromotionRefusedError(
            f"{record.name} has not passed validation; nothing promoted (run 'sandbox validate {record.name}')"
        )
    torn_down = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.teardown)
    if torn_down is None and record.status is not SandboxStatus.destroyed:
        raise PromotionRefusedError(
            f"{record.name} is not torn down yet (status {record.status.value}); nothing promoted "
            f"(run 'sandbox destroy {record.name}' first)"
        )


def promote(ctx: SandboxContext) -> StageResult:
    """Copy the sandbox back to development (no gotk-sync.yaml), push, open a pull request.

    A sandbox cloned from a canary goes back to the canary's directory instead (:func:`promotion_target`).

    Refused, with nothing pushed, before validation passed and teardown finished,
    and when development changed on the default branch since the sandbox was cut
    in files the promotion also changes (each listed). Idempotent: a rerun after a
    crash pushes what was committed and finds the open pull request.

    Raises:
        PromotionRefusedError: Not validated or not torn down.
        ConflictError: Development changed in the same files since the cut.
    """
    record = ctx.record
    if record.kind is SandboxKind.performance:
        return StageResult(
            stage=Stage.promote, summary="performance sandboxes are never promoted", details={"skipped": True}
        )
    check_promotable(ctx)
    branch = record.branch or ""
    default = ctx.config.fleet_repo.default_branch
    git = ctx.drivers.git
    repo = ctx.on_branch(branch)
    target = promotion_target(ctx.config, record.source_env)
    development = target_dir(ctx.config, target)
    sandbox_root = repo / ctx.sandbox_path
    base = git.merge_base(repo, f"origin/{default}", "HEAD")
    details: dict[str, Any] = {"base": base}
    if sandbox_root.is_dir():
        # Both directories are checked before anything changes: a link leading out of the checkout is refused.
        paths.entries(repo, sandbox_root)
        paths.entries(repo, development)
        fleetrepo.retarget_git_sources(sandbox_root, branch, default, repo=repo)  # development tracks main again
        report = fleetrepo.promote_cluster_dir(sandbox_root, repo / development, repo=repo)
        who = f"{record.ticket}: " if record.ticket else ""
        commit = git.commit_all(repo, f"{who}promote {record.name} to {target}", [development, ctx.sandbox_path])
        details.update(changed=report.copied, removed=report.removed)
    else:
        # Committed by an earlier attempt that crashed before the pull request.
        commit = git.rev_parse(repo, "HEAD")
        details["promoted"] = "earlier"
    # What the promotion changes in development since the cut, against what
    # development changed on the default branch meanwhile.
    ours = set(git.changed_files(repo, base, "HEAD", development))
    theirs = set(git.changed_files(repo, base, f"origin/{default}", development))
    conflicts = sorted(fleetrepo.relative_paths(ours & theirs, development))
    if conflicts:
        git.reset_hard(repo, f"origin/{branch}")  # drop the local promotion commit: nothing is pushed
        raise ConflictError(
            f"{target} changed on {default} since {record.name} was cut in files the sandbox also changed: "
            f"{', '.join(conflicts)}; nothing pushed (bring the change into the sandbox and validate again)"
        )
    git.push(repo, branch)
    details["commit"] = commit
    stats = git.diff_stat(repo, base, "HEAD", development)
    ctx.progress(f"promotion commit {commit} pushed to {branch}: {len(stats)} file(s) changed in {development}/")
    if not stats:
        ctx.progress(f"{record.name} changed nothing in {development}/: no pull request to open")
        return StageResult(
            stage=Stage.promote,
            summary=f"{record.name} changed nothing in {development}/; branch {branch} pushed, no pull request",
            details={**details, "pull_request": None},
        )
    body = pull_request_body(ctx, development, stats, git.diff(repo, base, "HEAD", development))
    return _open_pull_request(ctx, branch, default, body, details)


def _percent(value: Any) -> str:
    try:
        return f"{float(value):+.1f}%"
    except (TypeError, ValueError):
        return str(value)


#: How many Flux objects' states a pull request body lists at most, and how long each message may be.
PR_OBJECTS_LIMIT = 50
PR_MESSAGE_LIMIT = 300


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _readiness_lines(report: dict[str, Any]) -> list[str]:
    """The validated commit and each Flux object's state as validation read it from the sandbox's cluster."""
    objects = report.get("readiness") or []
    if not report.get("readiness_checked") or not objects:
        return []
    commit = report.get("commit")
    lines = [
        "",
        f"Flux objects on the sandbox's cluster at `{report.get('branch', '')}`"
        + (f" commit `{commit}`" if commit else "")
        + ":",
        "",
    ]
    for item in objects[:PR_OBJECTS_LIMIT]:
        state = "Ready" if item.get("ready") else "NOT Ready"
        reason = item.get("reason") or "NoStatus"
        message = _one_line(item.get("message") or "no Ready condition reported yet", PR_MESSAGE_LIMIT)
        lines.append(f"- `{item.get('object', '?')}`: {state}: {reason}: {message}")
    if len(objects) > PR_OBJECTS_LIMIT:
        lines.append(f"- … and {len(objects) - PR_OBJECTS_LIMIT} more")
    return lines


def pull_request_body(ctx: SandboxContext, development: str, stats: list[Any], diff: str) -> str:
    """The pull request's description: the diff of development, the validation, the performance comparison."""
    record = ctx.record
    validation = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.validate) or {}
    perf = ctx.inventory.stage_result(record.name, record.lifecycle_id, Stage.performance_test) or {}
    added = sum(s.added for s in stats)
    removed = sum(s.removed for s in stats)
    prefix = development.rstrip("/") + "/"
    lines = [
        f"Promotes sandbox `{record.name}` ({record.ticket}: {record.summary}) back to `{prefix}`.",
        "",
        f"### Changes in `{prefix}`",
        f"{len(stats)} file(s) changed, +{added} -{removed} lines:",
        "",
        *(
            f"- `{s.path.removeprefix(prefix)}`: " + ("binary" if s.binary else f"+{s.added} -{s.removed}")
            for s in stats
        ),
        "",
        f"`{fleetrepo.SYNC_FILE}` is never copied back: `{prefix}` keeps its own.",
        "",
        "<details><summary>diff</summary>",
        "",
        "```diff",
        diff if len(diff) <= PR_DIFF_LIMIT else diff[:PR_DIFF_LIMIT] + "\n… (diff truncated)",
        "```",
        "</details>",
        "",
        "### Validation",
        ("passed: " if (validation.get("details") or {}).get("passed") else "")
        + str(validation.get("summary", "not run")),
        *_readiness_lines((validation.get("details") or {}).get("report") or {}),
        "",
        "### Performance",
        str(perf.get("summary", "not run")),
    ]
    if (perf.get("details") or {}).get("stand_in"):
        lines += [
            "",
            "Load target: the local stand-in, not the sandbox (`performance.stand_in_on_real_clusters`): "
            "these figures measure the load path, not the sandbox's workloads.",
        ]
    changes = (perf.get("details") or {}).get("change_percent") or {}
    if changes:
        lines += ["", "| metric | change against the baseline |", "|---|---|"]
        lines += [f"| {metric} | {_percent(value)} |" for metric, value in changes.items()]
    elif perf:
        lines += ["", "No baseline to compare with yet."]
    return "\n".join(lines) + "\n"


def _open_pull_request(ctx: SandboxContext, branch: str, base: str, body: str, details: dict[str, Any]) -> StageResult:
    record = ctx.record
    pr = ctx.drivers.hosting.open_pull_request(
        head=branch, base=base, title=f"{record.ticket}: {record.summary}", body=body
    )
    ctx.inventory.update(record.name, pull_request_url=pr.url)
    if pr.manual:
        ctx.progress(f"no git-hosting token: open the pull request {branch} -> {base} at {pr.url}")
        summary = f"pull request {branch} -> {base} to open at {pr.url} (no git-hosting token)"
    else:
        ctx.progress(f"pull request #{pr.number}{'' if pr.created else ' (already open)'}: {pr.url}")
        summary = f"pull request #{pr.number} {branch} -> {base}: {pr.url}"
    return StageResult(
        stage=Stage.promote,
        summary=summary,
        details={**details, "pull_request": pr.model_dump(), "body": body},  # shown in the run's summary
    )
