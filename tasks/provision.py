"""The provision stage as a Prefect task."""

from __future__ import annotations

import re

from prefect import task

from sandbox.drivers.terraform import PlanSummary
from sandbox.models import Stage, StageResult
from tasks.common import STAGE_TASK_OPTIONS, StageRequest, create_markdown_artifact, run_stage, stage_cache_key


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from ``parts``."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def publish_plan(key: str, title: str, plan: PlanSummary) -> None:
    """Publish a terraform plan as a Markdown artifact of the running task.

    The plan's text is already redacted by the driver; outputs marked sensitive
    are shown by Terraform as ``(sensitive value)``.
    """
    create_markdown_artifact(markdown=plan.markdown(title), key=key, description=plan.summary_line())


@task(name="provision", cache_key_fn=stage_cache_key(Stage.provision), **STAGE_TASK_OPTIONS)
def provision_task(request: StageRequest) -> StageResult:
    """Create the sandbox cluster with terraform (plan shown in the log and as an artifact, then applied).

    Args:
        request: Which sandbox and lifecycle.

    Returns:
        The stage's result (a persisted checkpoint).
    """

    def show(plan: PlanSummary) -> None:
        publish_plan(artifact_key("provision-plan", request.name), f"terraform plan for sandbox {request.name}", plan)

    return run_stage(Stage.provision, request, on_plan=show)
