"""Aligning a long-lived environment's infrastructure after a promotion, as a Prefect task."""

from __future__ import annotations

from prefect import get_run_logger, task

from sandbox.align import AlignResult, align_environment
from sandbox.config import load_config
from sandbox.drivers.terraform import PlanSummary
from sandbox.wiring import build_drivers, open_inventory
from tasks.artifacts import artifact_key, publish_plan
from tasks.common import RETRY_DELAYS, resolve_secret, retry_if_retryable


@task(
    name="align",
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=[float(d) for d in RETRY_DELAYS],
    retry_condition_fn=retry_if_retryable,
    persist_result=True,
)
def align_task(
    config_path: str,
    environment: str,
    sandbox: str | None = None,
    approve: bool = False,
    apply: bool = False,
) -> AlignResult:
    """Propose the environment's alignment by pull request, or (``apply``) apply what is merged.

    Never cached: every run plans against the environment's current state. A held
    state lock is retried; a refused (destructive and unapproved, or not merged) run is not.

    Args:
        config_path: Path of fleet.yaml.
        environment: The long-lived environment to align.
        sandbox: The promoted sandbox whose overrides to use (default: the latest promotion).
        approve: With ``apply``, apply a plan that destroys or replaces resources.
        apply: Apply the variables the default branch records (the merged alignment).

    Returns:
        What was planned and applied.
    """
    logger = get_run_logger()
    config = load_config(config_path)
    hosting = config.drivers.git_hosting
    token = resolve_secret(hosting.token_secret_block, hosting.token_env) if hosting.type == "github" else None
    drivers = build_drivers(config, github_token=token)
    inventory = open_inventory(config)

    def show(plan: PlanSummary) -> None:
        publish_plan(artifact_key("align-plan", environment), f"terraform plan aligning {environment}", plan)

    try:
        return align_environment(
            config,
            inventory,
            git=drivers.git,
            terraform=drivers.terraform,
            environment=environment,
            hosting=drivers.hosting,
            sandbox=sandbox,
            apply=apply,
            approve=approve,
            progress=logger.info,
            on_plan=show,
        )
    finally:
        inventory.close()
