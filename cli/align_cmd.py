"""``sandbox align ENV [--apply]``: infrastructure alignment after a promotion, plan-then-apply.

Runs the ``sandbox-align`` flow in-process. Without ``--apply``: refused (exit 1,
naming the pull request) until the promotion's pull request is merged; then the
environment's cluster module is planned with the promoted sandbox's terraform
overrides in the environment's own state, and the environment's IaC variables are
committed in the fleet repository on a branch, with a pull request holding the plan.
``--apply``, once that pull request is merged, plans the merged values and applies
them only when the plan destroys and replaces nothing; otherwise the command exits
1 naming each resource that would be destroyed or replaced, unless ``--approve``
is given. Exit 2 for an unknown environment or a sandbox that was never promoted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import ConfigOption, echo, run_flow
from cli.prefect_env import configure_prefect
from sandbox.config import load_config


def align(
    environment: Annotated[str, typer.Argument(help="Long-lived environment to align, e.g. development")],
    sandbox: Annotated[
        str | None, typer.Option("--sandbox", help="Promoted sandbox whose overrides to use (default: the newest)")
    ] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="With --apply: apply even a plan that destroys or replaces resources")
    ] = False,
    apply: Annotated[bool, typer.Option("--apply", help="Apply the alignment once its pull request is merged")] = False,
    config: ConfigOption = Path("fleet.yaml"),
) -> None:
    """Propose an environment's alignment with the promoted sandbox by pull request; --apply once merged."""
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

    result = run_flow(
        sandbox_align,
        environment=environment,
        sandbox=sandbox,
        approve=approve,
        apply=apply,
        config_path=str(config.resolve()),
    )
    for line in result.lines():
        echo(line)


def register(app: typer.Typer) -> None:
    """Add ``align`` to the ``sandbox`` command line."""
    app.command("align")(align)
