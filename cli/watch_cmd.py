"""``sandbox watch ENV``: wait for a merged revision to be applied on a long-lived environment and Ready.

Exit codes: 0 landed; 1 stuck at the timeout (each stuck object named), no
cluster known for the environment, or the cluster unreachable; 2 invalid input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import EXIT_USAGE, ConfigOption, echo, fail, fail_from
from sandbox.errors import SandboxError


def watch(
    env: Annotated[str, typer.Argument(help="The environment to watch, e.g. development")],
    revision: Annotated[
        str | None,
        typer.Option("--revision", help="The merged commit (default: the tip of the branch the root source tracks)"),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds to wait (default: drivers.cluster.ready_timeout_seconds)"),
    ] = None,
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Wait until ENV's Flux applied a revision and every Kustomization and HelmRelease is Ready."""
    from sandbox.config import load_config
    from sandbox.watch import watch_environment
    from sandbox.wiring import build_drivers

    if timeout is not None and timeout <= 0:
        fail(f"--timeout must be above 0 seconds, not {timeout:g}", EXIT_USAGE)
    try:
        cfg = load_config(config)
        drivers = build_drivers(cfg)
        landing = watch_environment(
            cfg, env, git=drivers.git, terraform=drivers.terraform, revision=revision, timeout=timeout, progress=echo
        )
    except SandboxError as exc:
        fail_from(exc)
    echo(landing.summary())
    for state in landing.objects:
        echo(f"  {state.line()}")


def register(app: typer.Typer) -> None:
    """Add ``watch`` to the ``sandbox`` command line."""
    app.command("watch")(watch)
