"""``sandbox check`` (the fleet policy) and ``sandbox validate NAME`` (scan, policy, live readiness).

Registered by ``cli/main.py`` through :func:`register`.

* ``sandbox check [--repo PATH] [--config PATH] [--output text|json]`` -- the seed's
  rules for long-lived environments on a fleet repository checkout (see
  :mod:`sandbox.policy`). Without ``--config`` the repository's own ``fleet.yaml`` is
  used when it has one, else the seed's defaults (like ``sandbox clone``). Prints one
  line per violation (``<file>: <rule>: <message>``). Exit 0 clean, 1 violations, 2 bad
  input (no such repository, not a fleet repository, invalid configuration).
* ``sandbox validate NAME [--config PATH] [--output text|json]`` -- runs the
  ``sandbox-validate`` flow on an existing sandbox: static scan of its cluster directory
  and every path its Flux Kustomizations build, the fleet policy on its branch, and
  live readiness, at its branch's head. Prints the report (the same rows as the run's
  table artifact); exit 1 when the sandbox fails validation, with one line per cause.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    fail,
    fail_from,
    fail_from_flow,
    flow_run_line,
)
from cli.prefect_env import configure_prefect
from sandbox.config import FleetConfig, load_config
from sandbox.errors import SandboxError


def _config_label(config_path: Path, repo: Path) -> str:
    try:
        return config_path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return str(config_path)


def check(
    repo: Annotated[Path, typer.Option("--repo", help="A checkout of the fleet repository")] = Path("."),
    config: Annotated[
        Path | None, typer.Option("--config", help="fleet.yaml (default: the repository's own, if any)")
    ] = None,
    output: OutputOption = "text",
) -> None:
    """Check the fleet policy: tag-pinned production, semver-range staging, own gotk-sync.yaml, no lingering sandbox."""
    from sandbox.policy import RULES, check_repository

    check_output(output)
    if not repo.is_dir():
        fail(f"{repo}: no such directory", EXIT_USAGE)
    config_path = config if config is not None else repo / "fleet.yaml"
    cfg: FleetConfig | None = None
    try:
        if config is not None or config_path.is_file():
            cfg = load_config(config_path)
        report = check_repository(repo, cfg, config_file=_config_label(config_path, repo))
    except SandboxError as exc:
        fail_from(exc)
    if output == "json":
        echo_json(
            {
                "environments": report.environments,
                "violations": [v.model_dump() for v in report.violations],
                "rules": RULES,
            }
        )
    else:
        for line in report.lines():
            echo(line)
        where = f" ({cfg.base_dir / 'fleet.yaml' if config is None else config})" if cfg else " (seed defaults)"
        echo(
            f"fleet policy{where}: {len(report.environments)} long-lived environment(s) "
            f"({', '.join(report.environments) or 'none'}), {len(report.violations)} violation(s)"
        )
    if report.violations:
        fail(f"{len(report.violations)} fleet policy violation(s) in {repo}", EXIT_FAILED)


def validate(
    name: Annotated[str, typer.Argument(help="Sandbox name")],
    config: ConfigOption = Path("fleet.yaml"),
    output: OutputOption = "text",
) -> None:
    """Validate an existing sandbox: removed APIs, fleet policy, every Kustomization and HelmRelease Ready."""
    from sandbox.naming import validate_sandbox_name
    from sandbox.validation import ValidationFailedError, ValidationReport
    from sandbox.wiring import open_inventory

    check_output(output)
    try:
        cfg = load_config(config)
        validate_sandbox_name(name, cfg.protected_names())
        inventory = open_inventory(cfg)
        try:
            record = inventory.get(name)
        finally:
            inventory.close()
    except SandboxError as exc:
        fail_from(exc)
    configure_prefect(cfg.state_dir)
    from flows.operations import SandboxRef
    from flows.validate import sandbox_validate

    ref = SandboxRef(config_path=str(config.resolve()), name=name, lifecycle_id=record.lifecycle_id)
    state = call_flow(sandbox_validate, sandbox=ref)
    run_line = flow_run_line(sandbox_validate.name, state)
    report: ValidationReport | None = None
    error: Any = None
    if state.is_completed():
        report = state.result()
    else:
        error = state.result(raise_on_failure=False)
        if isinstance(error, ValidationFailedError):
            report = error.report
    if output == "json":
        if report is not None:
            echo_json(
                {
                    "passed": report.passed,
                    "summary": report.summary(),
                    "flow_run_id": str(state.state_details.flow_run_id),
                    "rows": report.rows(),
                    **report.model_dump(mode="json"),
                }
            )
    else:
        echo(run_line)
        if report is not None:
            for line in report.text_lines():
                echo(line)
    if report is not None and report.passed:
        return
    fail_from_flow(state, error)


def register(app: typer.Typer) -> None:
    """Add ``sandbox check`` and ``sandbox validate`` to the command line."""
    app.command("check")(check)
    app.command("validate")(validate)
