"""Release flows: publish a platform release (proposing the staging range change it
needs, if any), propose a staging range, and move production's fixed tag behind a
human approval.

``release-production`` pauses with a typed :class:`ProductionApproval` form (the
Prefect UI renders it, with the plan as its description); only an approval opens the
pull request, and the approval is checked against the plan it was shown for. Rolling
back is the same flow with an earlier tag (``rollback=True`` picks the previous
release).
"""

from __future__ import annotations

import time
from typing import Literal, cast

from prefect import flow, get_client, get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout, Pause
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput, keyset_from_paused_state
from pydantic import BaseModel, Field

from sandbox.errors import InvalidInputError, PermanentError, SandboxError
from sandbox.hardening import harden_process
from sandbox.release.production import ProductionPlan
from sandbox.release.proposals import ProposedChange
from sandbox.release.report import ReleaseReport
from sandbox.versions import Bump
from tasks.release import (
    ReleaseTarget,
    plan_production_task,
    propose_production_task,
    propose_range_task,
    publish_artifact_task,
    release_plan_task,
    tag_release_task,
)


class ProductionApproval(RunInput):
    """The approval form: the plan is shown, the approver decides and says why."""

    from_tag: str = Field(description="What the environment runs now")
    to_tag: str = Field(description="The tag the pull request pins")
    staging_runs: str = Field(description="What the semver-tracking environments run now")
    approve: bool = Field(default=False, description="Open the pull request")
    reason: str = Field(default="", description="Why (recorded in the pull request)")


class ApprovalTimeoutError(PermanentError):
    """Nobody approved or rejected within the approval timeout."""


class ProductionReleaseReport(BaseModel):
    """What the production release flow did."""

    outcome: Literal["unchanged", "rejected", "proposed"]
    plan: ProductionPlan
    reason: str = ""
    change: ProposedChange | None = None

    @property
    def summary(self) -> str:
        """One line for people."""
        if self.outcome == "unchanged":
            return f"{self.plan.environment} runs {self.plan.to_tag} already; nothing proposed"
        if self.outcome == "rejected":
            return f"{self.plan.title}: rejected ({self.reason or 'no reason given'}); nothing proposed"
        return self.change.summary if self.change else self.plan.title


@flow(name="release-publish")
def release_publish(
    target: ReleaseTarget,
    bump: Bump | None = None,
    version: str | None = None,
    existing_tag: bool = False,
    propose_ranges: bool = True,
) -> ReleaseReport:
    """Tag the default branch, publish the platform stack as a Flux OCI artifact, and propose range changes.

    A semver-tracking environment (staging) picks the release up by itself when its
    range admits it; when it does not (a major bump, or a minor one beyond ``1.2.x``),
    the range change is proposed as a pull request, which a person merges. Fixed-tag
    environments (production) are left alone: ``release-production`` moves them.

    Args:
        target: The fleet (fleet.yaml) and optionally the registry.
        bump: patch, minor or major (default patch when no version is given).
        version: An explicit X.Y.Z instead of a bump.
        existing_tag: Publish the artifact of the existing git tag ``version`` where it points.
        propose_ranges: Open the range-change pull requests (otherwise only report them).

    Returns:
        The published release (tag, commit, artifact URL and digest), the plan of what
        each environment runs before and after it, and the range changes proposed.
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    logger = get_run_logger()
    tagged = tag_release_task(target, bump=bump, version=version, existing_tag=existing_tag)
    published = publish_artifact_task(target, tagged)
    logger.info(published.summary)
    plan = release_plan_task(target, published.version)
    proposals: list[ProposedChange] = []
    warnings = list(published.warnings)
    for environment, range_ in plan.range_changes.items():
        if not propose_ranges:
            warnings.append(
                f"{environment}'s range does not admit {published.version}: "
                f"sandbox release propose-range --env {environment} --range {range_}"
            )
            continue
        try:
            change = propose_range_task(target, range_, environment)
        except SandboxError as exc:
            # The release is published; the range change can be proposed again by hand.
            warnings.append(f"{environment}: range change to {range_} not proposed: {exc}")
            continue
        logger.info(change.summary)
        proposals.append(change)
    if proposals:
        plan = release_plan_task(target, published.version)  # now naming the proposals' branches
    return ReleaseReport(published=published, plan=plan, range_proposals=proposals, warnings=warnings)


@flow(name="release-propose-range")
def release_propose_range(target: ReleaseTarget, semver_range: str, environment: str | None = None) -> ProposedChange:
    """Propose, by pull request, a new semver range for a semver-tracking environment (staging).

    Args:
        target: The fleet and optionally the registry.
        semver_range: The new Masterminds range, e.g. ``1.3.x`` or ``^2``.
        environment: Which environment (default: the only semver-tracking one).
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    change = propose_range_task(target, semver_range, environment)
    get_run_logger().info(change.summary)
    return change


@flow(name="release-production")
def release_production(
    target: ReleaseTarget,
    version: str | None = None,
    rollback: bool = False,
    environment: str | None = None,
    approval_timeout_seconds: int = 86400,
    approval_poll_seconds: int = 10,
) -> ProductionReleaseReport:
    """Move production's fixed platform tag by pull request, after a human approves the plan.

    Args:
        target: The fleet and optionally the registry.
        version: The published tag to move to.
        rollback: Move back to the release before the current one instead.
        environment: The fixed-tag environment (default: the only one).
        approval_timeout_seconds: How long the run waits for the approval.
        approval_poll_seconds: How often the paused run checks for it.

    Returns:
        unchanged (already there), rejected (nothing proposed) or proposed (the pull request).
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    logger = get_run_logger()
    plan = plan_production_task(target, version=version, rollback=rollback, environment=environment)
    if plan.noop:
        logger.info(f"{plan.environment} runs {plan.to_tag} already; nothing to approve")
        return ProductionReleaseReport(outcome="unchanged", plan=plan)
    form = ProductionApproval.with_initial_data(
        description=plan.describe(),
        from_tag=plan.from_tag,
        to_tag=plan.to_tag,
        staging_runs=plan.staging_summary,
    )
    logger.info(f"waiting for approval: {plan.title}")
    try:
        decision = _await_approval(form, approval_timeout_seconds, approval_poll_seconds)
    except FlowPauseTimeout:
        raise ApprovalTimeoutError(
            f"no approval within {approval_timeout_seconds}s for {plan.title}; nothing proposed"
        ) from None
    if (decision.from_tag, decision.to_tag) != (plan.from_tag, plan.to_tag):
        # The form shows the plan in editable fields; an approval is for the plan shown, nothing else.
        raise InvalidInputError(
            f"the approval names {decision.from_tag} -> {decision.to_tag}, but the plan is "
            f"{plan.from_tag} -> {plan.to_tag}; nothing proposed (start a new run for another tag)"
        )
    if not decision.approve:
        logger.info(f"rejected: {decision.reason or 'no reason given'}")
        return ProductionReleaseReport(outcome="rejected", plan=plan, reason=decision.reason)
    change = propose_production_task(target, plan, decision.reason)
    logger.info(change.summary)
    return ProductionReleaseReport(outcome="proposed", plan=plan, reason=decision.reason, change=change)


def _await_approval(form: type[ProductionApproval], timeout: int, poll_seconds: int) -> ProductionApproval:
    """Pause for the approval form, and keep waiting when the pause's own answer was lost.

    Prefect's client resends a request whose response it lost (a timeout against a busy
    server); the server then refuses the resent transition as a duplicate, and
    ``pause_flow_run`` raises ``Pause`` although the run *is* paused for this form. Left
    alone the run would end there, paused with nobody waiting, its approval unanswerable.
    Carry on as ``pause_flow_run`` would have: publish the form, poll until resumed.
    """
    try:
        return pause_flow_run(wait_for_input=form, timeout=timeout, poll_interval=poll_seconds)
    except Pause as signal:
        context = FlowRunContext.get()
        run = context.flow_run if context is not None else None
        if signal.state is None or not signal.state.is_paused() or run is None:
            raise
        keyset = keyset_from_paused_state(signal.state)
        form.save(keyset)
        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while True:
                state = client.read_flow_run(run.id).state
                if state is not None and state.is_running():
                    # load() dispatches on the caller; from this synchronous flow it is synchronous
                    return cast(ProductionApproval, form.load(keyset))
                if time.monotonic() >= deadline:
                    raise FlowPauseTimeout("Flow run was paused and never resumed.") from None
                time.sleep(poll_seconds)
