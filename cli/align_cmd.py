"""``sandbox align ENV``: non-destructive infrastructure alignment after a promotion.

Runs the ``sandbox-align`` flow in-process: the environment's cluster module is
planned with the promoted sandbox's terraform overrides in the environment's own
state, the plan is shown, and it is applied only when it destroys and replaces
nothing. Otherwise the command exits 1 naming each resource that would be
destroyed or replaced, unless ``--approve`` is given. Exit 2 for an unknown
environment or a sandbox that was never promoted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import EXIT_FAILED, echo, fail, fail_from
from cli.prefect_env import configure_prefect, quiet_expected_tracebacks
from sandbox.config import load_config
from sandbox.errors import SandboxError


def _run_flow(flow_fn: Any, /, **parameters: Any) -> Any:
    """Run a flow in-process; print its final state; exit 1 with the cause on failure."""
    quiet_expected_tracebacks()
    state = flow_fn(**parameters, return_state=True)
    echo(f"flow run {flow_fn.name!r} ({state.state_details.flow_run_id}): {state.name}")
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    if isinstance(error, SandboxError):
        fail_from(error)
    fail(f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(state.message), EXIT_FAILED)


def align(
    environment: Annotated[str, typer.Argument(help="Long-lived environment to align, e.g. development")],
    sandbox: Annotated[
        str | None, typer.Option("--sandbox", help="Promoted sandbox whose overrides to use (default: the newest)")
    ] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="Apply even a plan that destroys or replaces resources")
    ] = False,
    config: Annotated[Path, typer.Option("--config", help="Path of fleet.yaml")] = Path("fleet.yaml"),
) -> None:
    """Align an environment's infrastructure with the promoted sandbox (non-destructive unless --approve)."""
    from sandbox.align import find_promotion
    from sandbox.wiring import open_inventory

    cfg = load_config(config)
    cfg.environment(environment)  # exit 2 before anything runs
    if sandbox is not None:
        inventory = open_inventory(cfg)
        try:
            find_promotion(inventory, sandbox)
        finally:
            inventory.close()
    configure_prefect(cfg.state_dir)
    from flows.align import sandbox_align

    result = _run_flow(
        sandbox_align,
        environment=environment,
        sandbox=sandbox,
        approve=approve,
        config_path=str(config.resolve()),
    )
    for line in result.lines():
        echo(line)


def register(app: typer.Typer) -> None:
    """Add ``align`` to the ``sandbox`` command line."""
    app.command("align")(align)
