"""``sandbox release …`` and ``sandbox resolve``: publish releases and move environments.

Registered by ``cli/main.py`` through :func:`register`.

Commands (exit 0 success, 1 a failed operation, 2 invalid input; one-line errors):

* ``sandbox release [--bump patch|minor|major | --version X.Y.Z] [--existing-tag]
  [--no-propose-range]`` — tag the default branch and publish ``platform/`` as a Flux OCI
  artifact (flow ``release-publish``). Refuses (exit 1, naming it) a tag that exists in
  the registry or, at another commit, in git; finishes a release whose git tag exists
  without artifact. A semver range that does not admit the release (a major bump) gets
  its range change proposed as a pull request.
* ``sandbox release plan [--version X.Y.Z] [--output text|json]`` — what each environment
  runs before → after the newest release (or after publishing ``--version``), with the
  range change a staging environment needs when its range does not admit the release.
* ``sandbox release propose-range --range R [--env ENV]`` — pull request changing a
  semver-tracking environment's ``.spec.ref.semver`` (flow ``release-propose-range``).
* ``sandbox release promote-production (--version X.Y.Z | --rollback) [--env ENV]
  [--approve [--reason TEXT]] [--timeout SECONDS]`` — flow ``release-production``: plans,
  pauses for the approval form, and opens the one-line ``.spec.ref.tag`` pull request
  once approved. ``--approve`` answers the form from the command line; without it the
  command waits for someone to answer it in the Prefect UI. A rejection exits 1.
* ``sandbox resolve --range R [--tags T1,T2,…]`` — the tag a Flux OCIRepository with that
  ``.spec.ref.semver`` picks (from ``--tags``, else from the registry); exit 1 when none
  matches, 2 for an invalid range.

Every command that talks to the registry takes ``--registry oci://host[:port]/path``
(and ``--insecure-registry`` for plain HTTP) to override fleet.yaml; without a
``drivers.registry`` section the URL of the clusters' OCIRepository is used.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigOption,
    OutputOption,
    call_flow,
    check_output,
    echo,
    echo_json,
    echo_status,
    fail,
    flow_result,
    flow_run_line,
    one_line_errors,
    run_flow,
)
from cli.prefect_env import configure_prefect, quiet_expected_tracebacks
from sandbox.config import FleetConfig, load_config
from sandbox.drivers.registry import RegistryConfig, RegistryError, validate_tag
from sandbox.errors import InvalidInputError
from sandbox.release.context import ReleaseContext, build_release_context
from sandbox.release.plan import ReleasePlan, release_plan
from sandbox.release.settings import discover_registry, registry_override
from sandbox.release.versions import validate_release_version
from sandbox.versions import parse_constraint
from sandbox.versions import resolve as resolve_range
from sandbox.wiring import build_git

release_app = typer.Typer(
    name="release",
    help="Publish platform releases (git tag + Flux OCI artifact) and move environments to them.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", help="OCI repository overriding fleet.yaml, e.g. oci://127.0.0.1:5000/fleet/platform"),
]
InsecureOption = Annotated[bool, typer.Option("--insecure-registry", help="The --registry speaks plain HTTP")]


class BumpChoice(StrEnum):
    """Which part of the version a release increments."""

    patch = "patch"
    minor = "minor"
    major = "major"


def _load(config: Path) -> FleetConfig:
    cfg = load_config(config)
    configure_prefect(cfg.state_dir)
    return cfg


def _override(cfg: FleetConfig, registry: str | None, insecure: bool) -> RegistryConfig | None:
    if insecure and registry is None:
        fail("--insecure-registry goes with --registry", EXIT_USAGE)
    return registry_override(cfg, registry, True if insecure else None)


def _target(config: Path, cfg: FleetConfig, override: RegistryConfig | None) -> Any:
    from tasks.release import ReleaseTarget

    return ReleaseTarget(config_path=str(config.resolve()), registry=override)


def direct_context(cfg: FleetConfig, override: RegistryConfig | None) -> ReleaseContext:
    """A release context for the commands that run no flow (plan, resolve): secrets from env or Secret block."""
    git = build_git(cfg)
    settings = override or discover_registry(cfg, git)
    password = None
    if settings.password_secret_block:
        from tasks.common import resolve_secret  # Prefect only when a Secret block is configured

        password = resolve_secret(settings.password_secret_block, None)
    return build_release_context(cfg, registry=settings, registry_password=password)


# -- sandbox release ---------------------------------------------------------------------


@release_app.callback(invoke_without_command=True)
@one_line_errors
def release(
    ctx: typer.Context,
    bump: Annotated[BumpChoice | None, typer.Option("--bump", help="patch, minor or major (default patch)")] = None,
    version: Annotated[str | None, typer.Option("--version", help="Release exactly this X.Y.Z")] = None,
    existing_tag: Annotated[
        bool, typer.Option("--existing-tag", help="Publish the artifact of the existing git tag --version")
    ] = False,
    propose_ranges: Annotated[
        bool,
        typer.Option(
            "--propose-range/--no-propose-range",
            help="Open the pull request changing a semver range that does not admit the release",
        ),
    ] = True,
    registry: RegistryOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = "text",
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Tag the default branch and publish the platform stack as a Flux OCI artifact."""
    if ctx.invoked_subcommand is not None:
        return
    check_output(output)
    if bump is not None and version is not None:
        fail("give --bump or --version, not both", EXIT_USAGE)
    if version is not None:
        validate_release_version(version)
    elif existing_tag:
        fail("--existing-tag needs --version naming the git tag", EXIT_USAGE)
    cfg = _load(config)
    target = _target(config, cfg, _override(cfg, registry, insecure))
    from flows.release import release_publish

    report = run_flow(
        release_publish,
        json_output=output == "json",
        target=target,
        bump=bump.value if bump is not None else None,
        version=version,
        existing_tag=existing_tag,
        propose_ranges=propose_ranges,
    )
    if output == "json":
        data = report.published.model_dump(mode="json")
        data["warnings"] = report.warnings
        data["range_proposals"] = [change.model_dump(mode="json") for change in report.range_proposals]
        data["plan"] = report.plan.model_dump(mode="json")
        echo_json(data)
        return
    for line in report.lines():
        echo(line)


# -- sandbox release plan -----------------------------------------------------------------


def render_plan(plan: ReleasePlan) -> list[str]:
    """The plan as a table with notes, one string per line."""
    if plan.version is None:
        head = f"no release in {plan.registry} yet"
    else:
        state = "published" if plan.published else "not published yet"
        head = f"release {plan.version} ({state}) in {plan.registry}; main at {plan.main_commit[:12]}"
    rows = [("ENVIRONMENT", "TRACKS", "BEFORE", "AFTER", "CHANGE")]
    for env in plan.environments:
        rows.append(
            (
                env.environment,
                f"{env.tracking} {env.reference}",
                env.before or "(none)",
                env.after or "(none)",
                "yes" if env.changes else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [head, ""]
    lines.extend("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)
    notes = [(env.environment, note) for env in plan.environments for note in env.notes]
    if notes:
        lines.append("")
        lines.extend(f"{name}: {note}" for name, note in notes)
    if plan.range_changes:
        lines.append("")
        what = (
            f"MAJOR BUMP: {plan.version} raises the major version (a breaking release)"
            if plan.major_bump
            else f"RANGE CHANGE: {plan.version} is outside a semver range"
        )
        changes = []
        for name, range_ in plan.range_changes.items():
            branch = plan.range_proposals.get(name)
            how = (
                f"proposed on branch {branch}"
                if branch
                else f"sandbox release propose-range --env {name} --range {range_}"
            )
            changes.append(f"{name} needs range {range_} by pull request ({how})")
        lines.append(f"{what}: {'; '.join(changes)}")
    elif plan.major_bump:
        lines.append("")
        lines.append(f"MAJOR BUMP: {plan.version} raises the major version (a breaking release)")
    return lines


@release_app.command("plan")
@one_line_errors
def plan(
    version: Annotated[
        str | None, typer.Option("--version", help="Plan publishing this X.Y.Z (default: the newest release)")
    ] = None,
    registry: RegistryOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = "text",
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """What each environment runs before -> after the newest release (or --version)."""
    check_output(output)
    if version is not None:
        validate_release_version(version)
    cfg = load_config(config)
    result = release_plan(direct_context(cfg, _override(cfg, registry, insecure)), version=version)
    if output == "json":
        data = result.model_dump(mode="json")
        for row, env in zip(data["environments"], result.environments, strict=True):
            row["changes"] = env.changes
        echo_json(data)
        return
    for line in render_plan(result):
        echo(line)


# -- sandbox release propose-range ----------------------------------------------------------


@release_app.command("propose-range")
@one_line_errors
def propose_range(
    range_: Annotated[str, typer.Option("--range", help="The new Masterminds range, e.g. 1.3.x or ^2")],
    env: Annotated[
        str | None, typer.Option("--env", help="Semver-tracking environment (default: the only one)")
    ] = None,
    registry: RegistryOption = None,
    insecure: InsecureOption = False,
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Open a pull request changing a semver-tracking environment's range (a major bump needs one)."""
    parse_constraint(range_)  # an invalid range is exit 2 before anything runs
    if not range_.strip():
        fail("--range is empty: Flux ignores an empty range", EXIT_USAGE)
    cfg = _load(config)
    if env is not None:
        cfg.environment(env)
    target = _target(config, cfg, _override(cfg, registry, insecure))
    from flows.release import release_propose_range

    change = run_flow(release_propose_range, target=target, semver_range=range_, environment=env)
    echo(change.summary)


# -- sandbox release promote-production --------------------------------------------------------


def find_paused_run(marker: str) -> UUID | None:
    """The flow run tagged ``marker`` once it is paused *and* its input form is saved.

    ``pause_flow_run`` sets the Paused state before it stores the form's schema; a resume
    in between is refused by the server, so both are waited for.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[marker]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
            )
        )
        for run in runs:
            keyset = run.state.state_details.run_input_keyset if run.state else None
            if not keyset:
                continue
            try:
                client.read_flow_run_input(run.id, keyset["schema"])
            except Exception:  # noqa: BLE001 - not saved yet (404): look again later
                continue
            return run.id
    return None


def run_flow_in_thread(flow_fn: Any, marker: str, **parameters: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``flow_fn`` in a thread with the run tag ``marker``; the box receives ``state`` or ``error``."""
    from prefect import tags
    from prefect.client.orchestration import get_client

    # Reach the API once from this thread first: without PREFECT_API_URL that starts
    # Prefect's ephemeral server here, before the flow thread and the pause watcher
    # could each start one at the same moment (the loser would be left running).
    with get_client(sync_client=True) as client:
        client.api_healthcheck()

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            with tags(marker):
                box["state"] = call_flow(flow_fn, **parameters)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc

    # The caller's context (Prefect settings, e.g. a test harness's API URL) goes along.
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(target,), name=f"flow-{marker}", daemon=True)
    worker.start()
    return worker, box


def wait_for_paused_run(worker: threading.Thread, marker: str, poll_seconds: float = 0.5) -> UUID | None:
    """Wait until the flow run in ``worker`` is paused for input; ``None`` if the thread ends first."""
    while worker.is_alive():
        run_id = find_paused_run(marker)
        if run_id is not None:
            return run_id
        worker.join(poll_seconds)
    return None


@release_app.command("promote-production")
@one_line_errors
def promote_production(
    version: Annotated[str | None, typer.Option("--version", help="The published tag to move to")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Move back to the previous release")] = False,
    env: Annotated[str | None, typer.Option("--env", help="Fixed-tag environment (default: the only one)")] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Answer the approval form: approved")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (with --approve; recorded in the PR)")] = "",
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for the approval")] = 86400,
    registry: RegistryOption = None,
    insecure: InsecureOption = False,
    output: OutputOption = "text",
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Propose moving production's fixed tag (pull request), behind the approval form."""
    check_output(output)
    if (version is None) == (not rollback):
        fail("give --version X.Y.Z or --rollback (one of them)", EXIT_USAGE)
    if version is not None:
        try:
            validate_tag(version)
        except RegistryError as exc:
            raise InvalidInputError(str(exc)) from None
    if reason and not approve:
        fail("--reason goes with --approve (otherwise the approver gives it in the form)", EXIT_USAGE)
    if timeout <= 0:
        fail("--timeout must be positive", EXIT_USAGE)
    cfg = _load(config)
    if env is not None:
        cfg.environment(env)
    target = _target(config, cfg, _override(cfg, registry, insecure))
    from flows.release import release_production

    quiet_expected_tracebacks()
    marker = f"sandbox-cli-{uuid.uuid4().hex[:12]}"
    worker, box = run_flow_in_thread(
        release_production,
        marker,
        target=target,
        version=version,
        rollback=rollback,
        environment=env,
        approval_timeout_seconds=timeout,
        approval_poll_seconds=2,
    )
    run_id = wait_for_paused_run(worker, marker)
    if run_id is not None:
        if approve:
            from prefect.flow_runs import resume_flow_run

            resume_flow_run(run_id, run_input={"approve": True, "reason": reason})
            echo_status(f"approved flow run {run_id} from the command line", json_output=output == "json")
        else:
            echo_status(
                f"waiting for approval of flow run {run_id}: "
                "answer its form in the Prefect UI (or rerun with --approve)",
                json_output=output == "json",
            )
    started = time.monotonic()
    while worker.is_alive():
        worker.join(1.0)
        if time.monotonic() - started > timeout + 60:
            fail(f"flow run {run_id} did not finish within the approval timeout", EXIT_FAILED)
    if "error" in box:
        raise box["error"]
    state = box["state"]
    if state.is_failed() and "never resumed" in (state.message or ""):
        # Prefect's server fails an expired pause itself; the flow's own error does not reach the state.
        echo_status(flow_run_line(release_production.name, state), json_output=output == "json")
        fail(f"no approval within {timeout}s; nothing proposed", EXIT_FAILED)
    report = flow_result(release_production.name, state, json_output=output == "json")
    if output == "json":
        echo_json(report.model_dump(mode="json"))
    else:
        echo(report.summary)
    if report.outcome == "rejected":
        raise typer.Exit(EXIT_FAILED)


# -- sandbox resolve -------------------------------------------------------------------------------


@one_line_errors
def resolve(
    range_: Annotated[str, typer.Option("--range", help="Masterminds semver range, as .spec.ref.semver")],
    tags: Annotated[
        str | None, typer.Option("--tags", help="Comma-separated tags (default: the registry's tags)")
    ] = None,
    registry: RegistryOption = None,
    insecure: InsecureOption = False,
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Print the tag a Flux OCIRepository with this semver range picks (exit 1 if none matches)."""
    constraint = parse_constraint(range_)  # InvalidConstraintError: exit 2
    if tags is not None:
        candidates = [t.strip() for t in tags.split(",") if t.strip()]
        source = "--tags"
    else:
        cfg = load_config(config)
        context = direct_context(cfg, _override(cfg, registry, insecure))
        candidates = context.registry.list_tags()
        source = context.registry.url
    picked = resolve_range(constraint, candidates)
    if picked is None:
        fail(f"no tag of {len(candidates)} in {source} satisfies {range_!r}", EXIT_FAILED)
    echo(picked)


__all__ = [
    "BumpChoice",
    "direct_context",
    "find_paused_run",
    "promote_production",
    "release_app",
    "render_plan",
    "resolve",
    "run_flow_in_thread",
    "wait_for_paused_run",
]


def register(app: typer.Typer) -> None:
    """Add ``sandbox release …`` and ``sandbox resolve`` to the command line."""
    app.add_typer(release_app, name="release")
    app.command("resolve")(resolve)
