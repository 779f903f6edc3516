"""Release steps as Prefect tasks: thin wrappers over :mod:`sandbox.release`.

Each task resolves secrets (Prefect Secret blocks or the environment) here, builds
the drivers, and calls one core function. Tasks retry only retryable failures (a
registry or git host that did not answer); every core step is idempotent against
the real state (tags, artifacts, branches), so no Prefect result cache is used:
a retried or rerun step looks at the world again instead of trusting a checkpoint.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from sandbox.config import load_config
from sandbox.drivers.registry import RegistryConfig
from sandbox.release.context import ReleaseContext, build_release_context
from sandbox.release.plan import ReleasePlan, release_plan
from sandbox.release.production import ProductionPlan, plan_production, propose_production
from sandbox.release.proposals import ProposedChange, propose_range
from sandbox.release.publish import PublishedRelease, TaggedRelease, publish_artifact, tag_release
from sandbox.release.settings import discover_registry
from sandbox.versions import Bump
from sandbox.wiring import build_git
from tasks.common import resolve_secret, retry_if_retryable

#: Retry delays (seconds) for a registry or git host that did not answer.
RELEASE_RETRY_DELAYS = [2, 10, 30]

#: Options every release task shares.
RELEASE_TASK_OPTIONS: dict[str, Any] = {
    "retries": len(RELEASE_RETRY_DELAYS),
    "retry_delay_seconds": RELEASE_RETRY_DELAYS,
    "retry_condition_fn": retry_if_retryable,
    "cache_policy": NO_CACHE,
}


class ReleaseTarget(BaseModel):
    """Which fleet and which registry a release step works on."""

    config_path: str = Field(default="fleet.yaml", description="Path of fleet.yaml on the worker")
    registry: RegistryConfig | None = Field(
        default=None, description="Registry settings overriding fleet.yaml's (default: fleet.yaml, else the clusters')"
    )


def release_context(target: ReleaseTarget) -> ReleaseContext:
    """The release context for ``target``, with secrets resolved from Secret blocks or the environment."""
    logger = get_run_logger()
    config = load_config(target.config_path)
    hosting = config.drivers.git_hosting
    github_token = resolve_secret(hosting.token_secret_block, hosting.token_env) if hosting.type == "github" else None
    settings = target.registry or discover_registry(config, build_git(config))
    password = resolve_secret(settings.password_secret_block, None) if settings.password_secret_block else None
    return build_release_context(
        config,
        registry=settings,
        registry_password=password,
        github_token=github_token,
        progress=logger.info,
    )


@task(name="release-tag", **RELEASE_TASK_OPTIONS)
def tag_release_task(
    target: ReleaseTarget, bump: Bump | None = None, version: str | None = None, existing_tag: bool = False
) -> TaggedRelease:
    """Decide the version from the existing tags and push its annotated git tag (or find it from an earlier run)."""
    return tag_release(release_context(target), bump=bump, version=version, existing_tag=existing_tag)


@task(name="release-publish-artifact", **RELEASE_TASK_OPTIONS)
def publish_artifact_task(target: ReleaseTarget, tagged: TaggedRelease) -> PublishedRelease:
    """Package ``platform/`` at the tag as a Flux OCI artifact and push it (never over an existing tag)."""
    return publish_artifact(release_context(target), tagged)


@task(name="release-plan", **RELEASE_TASK_OPTIONS)
def release_plan_task(target: ReleaseTarget, version: str | None = None) -> ReleasePlan:
    """What each environment runs before and after ``version`` (default: the newest release)."""
    return release_plan(release_context(target), version=version)


@task(name="release-plan-production", **RELEASE_TASK_OPTIONS)
def plan_production_task(
    target: ReleaseTarget, version: str | None = None, rollback: bool = False, environment: str | None = None
) -> ProductionPlan:
    """Plan moving the fixed-tag environment to ``version`` (or back one release)."""
    return plan_production(release_context(target), version=version, rollback=rollback, environment=environment)


@task(name="release-propose-production", **RELEASE_TASK_OPTIONS)
def propose_production_task(target: ReleaseTarget, plan: ProductionPlan, reason: str = "") -> ProposedChange:
    """Open the pull request that changes the environment's ``.spec.ref.tag`` (one line)."""
    return propose_production(release_context(target), plan, reason=reason)


@task(name="release-propose-range", **RELEASE_TASK_OPTIONS)
def propose_range_task(target: ReleaseTarget, range_: str, environment: str | None = None) -> ProposedChange:
    """Open the pull request that changes a semver environment's ``.spec.ref.semver``."""
    return propose_range(release_context(target), range_=range_, environment=environment)
