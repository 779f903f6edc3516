"""``sandbox cleanup`` and ``sandbox extend``: the nightly cleanup on demand, and TTLs.

Registered by ``cli/main.py`` through :func:`register`.

* ``sandbox cleanup [--dry-run] [--output text|json]`` -- runs the
  ``cleanup-expired-sandboxes`` flow (the one deployed nightly): expired
  sandboxes not protected with ``--keep`` are torn down through the normal
  teardown stage, orphans resolved (see :mod:`sandbox.cleanup`). ``--dry-run``
  lists the plan and changes nothing. Exit 0 when everything planned was done,
  1 when an action failed or part of the scan could not be made (the table
  still shows every outcome), 2 for invalid input.
* ``sandbox extend NAME [--ttl DURATION] [--keep/--no-keep]`` -- pushes the
  expiry out to ``max(now, current expiry) + DURATION`` (see
  :mod:`sandbox.expiry`); refused with exit 2 beyond ``sandbox.max_ttl``.
  ``--keep`` protects the sandbox from cleanup, ``--no-keep`` lifts that.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import (
    EXIT_FAILED,
    ConfigOption,
    OutputOption,
    call_flow,
    check_output,
    echo,
    echo_json,
    fail,
    fail_from,
    fail_from_flow,
)
from cli.prefect_env import configure_prefect
from sandbox.config import FleetConfig, load_config
from sandbox.errors import SandboxError


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report_lines(report: Any) -> list[str]:
    """The text rendering of a :class:`sandbox.cleanup.CleanupReport`."""
    title = f"cleanup {report.run_id}{' (dry run: nothing changed)' if report.dry_run else ''}"
    if not report.outcomes:
        lines = [f"{title}: nothing to clean up"]
    else:
        rows = report.rows()
        target_width = max(12, *(len(r["target"]) for r in rows))
        lines = [
            f"{title}: {len(rows)} action(s)",
            f"{'KIND':<17} {'TARGET':<{target_width}} {'ACTION':<19} {'STATUS':<8} {'COST/H':>7} {'SAVING':>8}  DETAIL",
        ]
        for r in rows:
            detail = r["detail"] or r["reason"]
            lines.append(
                f"{r['kind']:<17} {r['target']:<{target_width}} {r['action']:<19} {r['status']:<8} "
                f"{_money(r['hourly_cost']):>7} {_money(r['estimated_saving']):>8}  {detail}"
            )
        verb = "would save" if report.dry_run else "saved"
        lines.append(
            f"estimated saving: {verb} {report.estimated_saving():.2f} {report.currency} "
            "(assuming a forgotten sandbox runs cost.unnoticed_hours past its expiry)"
        )
    if report.protected_expired:
        lines.append(f"{report.protected_expired} expired sandbox(es) not cleaned: protected with --keep")
    if report.busy:
        lines.append(f"left alone while a run works on them: {', '.join(report.busy)}")
    lines += [f"warning: scan incomplete: {w}" for w in report.warnings]
    return lines


def _config(path: Path) -> FleetConfig:
    config = load_config(path)
    configure_prefect(config.state_dir)
    return config


def _recorded_report(config: FleetConfig, run_id: str) -> Any:
    from sandbox.cleanup import report_from_entries
    from sandbox.wiring import open_inventory

    inventory = open_inventory(config)
    try:
        entries = inventory.cleanup_actions(run_id=run_id)
    finally:
        inventory.close()
    return report_from_entries(run_id, entries, currency=config.cost.currency)


def _show(report: Any, output: str) -> None:
    if output == "json":
        echo_json(report.as_json())
    else:
        for line in report_lines(report):
            echo(line)


def cleanup(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the plan; change nothing")] = False,
    output: OutputOption = "text",
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Tear down expired sandboxes (not --keep) and resolve orphaned states, branches and records."""
    check_output(output)
    cfg = _config(config)
    from flows.cleanup import cleanup_expired_sandboxes

    run_id = uuid.uuid4().hex[:12]
    state = call_flow(cleanup_expired_sandboxes, config_path=str(config.resolve()), dry_run=dry_run, run_id=run_id)
    if state.is_completed():
        report = state.result()
        _show(report, output)
        if report.warnings:
            fail(f"cleanup {run_id}: scan incomplete: {'; '.join(report.warnings)}", EXIT_FAILED)
        return
    error = state.result(raise_on_failure=False)
    if not dry_run:
        recorded = _recorded_report(cfg, run_id)
        if recorded.outcomes:
            _show(recorded, output)
    fail_from_flow(state, error)


def extend(
    name: Annotated[str, typer.Argument(help="Sandbox name")],
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="Add this to the later of now and the current expiry, e.g. 24h")
    ] = None,
    keep: Annotated[
        bool | None, typer.Option("--keep/--no-keep", help="Protect from (or expose to) the nightly cleanup")
    ] = None,
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Push a sandbox's expiry out (at most sandbox.max_ttl from now) and/or set its --keep protection."""
    from sandbox.expiry import extend as extend_expiry
    from sandbox.naming import validate_sandbox_name
    from sandbox.wiring import open_inventory

    cfg = load_config(config)
    validate_sandbox_name(name, cfg.protected_names())
    inventory = open_inventory(cfg)
    try:
        done = extend_expiry(cfg, inventory, name, ttl=ttl, keep=keep)
    except SandboxError as exc:
        fail_from(exc)
    finally:
        inventory.close()
    record = done.record
    if ttl is not None:
        echo(f"{name}: expires {record.expires_at:%Y-%m-%dT%H:%M:%SZ} (was {done.previous_expiry:%Y-%m-%dT%H:%M:%SZ})")
    if keep is not None:
        state = "protected from cleanup (--keep)" if record.keep else "no longer protected from cleanup"
        echo(f"{name}: {state}{'' if done.keep_changed else ' (unchanged)'}")


def register(app: typer.Typer) -> None:
    """Add ``cleanup`` and ``extend`` to the ``sandbox`` command line."""
    app.command("cleanup")(cleanup)
    app.command("extend")(extend)
