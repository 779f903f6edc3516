"""The promotion's last step as a Prefect task: once the pull request merged, watch development converge."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from sandbox.config import load_config
from sandbox.watch import LandingResult, watch_promotion
from tasks.common import RETRY_DELAYS, StageRequest, retry_if_retryable, stage_context


@task(
    name="watch-development",
    task_run_name="promote: watch development land",
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=[float(d) for d in RETRY_DELAYS],
    retry_condition_fn=retry_if_retryable,
    cache_policy=NO_CACHE,
)
def watch_landing_task(request: StageRequest) -> LandingResult:
    """Wait for development to apply the merged promotion and be Ready; say so when it is not merged yet.

    Not cached: each run asks the git host again whether the pull request merged.

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        Landed (with the revision), awaiting merge, or skipped.
    """
    config = load_config(request.config_path)
    ctx = stage_context(config, request.name)
    try:
        result = watch_promotion(ctx)
    finally:
        ctx.inventory.close()
    ctx.progress(f"watch development: {result.outcome}: {result.summary}")
    return result
