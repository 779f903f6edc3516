"""``sandbox-align``: after a promotion, align a long-lived environment's infrastructure with the sandbox."""

from __future__ import annotations

from prefect import flow

from sandbox.align import AlignResult
from sandbox.hardening import harden_process
from tasks.align import align_task


@flow(name="sandbox-align", flow_run_name="align-{environment}")
def sandbox_align(
    environment: str = "development",
    sandbox: str | None = None,
    approve: bool = False,
    config_path: str = "fleet.yaml",
) -> AlignResult:
    """Plan the environment's cluster module with the promoted sandbox's overrides and apply it if non-destructive.

    A plan that destroys or replaces anything fails the run, naming each resource,
    unless ``approve`` is set (run again with it after reviewing the plan artifact).

    Args:
        environment: The long-lived environment to align.
        sandbox: The promoted sandbox whose overrides to use (default: the newest promotion).
        approve: Apply a plan that destroys or replaces resources.
        config_path: Path of fleet.yaml on the worker.
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    return align_task(config_path, environment, sandbox=sandbox, approve=approve)
