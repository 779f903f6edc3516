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
    apply: bool = False,
) -> AlignResult:
    """Plan-then-apply, as Atlantis: propose the environment's IaC variables by pull request, apply once merged.

    Without ``apply``: refused until the promotion's pull request is merged; then the
    environment's module is planned with the promoted sandbox's overrides and the
    variables are committed in the fleet repository on a branch, with a pull request
    holding the plan. With ``apply`` (after that pull request is merged): the merged
    values are planned and applied; a plan that destroys or replaces anything fails
    the run, naming each resource, unless ``approve`` is set.

    Args:
        environment: The long-lived environment to align.
        sandbox: The promoted sandbox whose overrides to use (default: the latest promotion).
        approve: With ``apply``, apply a plan that destroys or replaces resources.
        config_path: Path of fleet.yaml on the worker.
        apply: Apply the merged alignment.
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    return align_task(config_path, environment, sandbox=sandbox, approve=approve, apply=apply)
