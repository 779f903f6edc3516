"""Prefect artifacts the tasks publish: their keys, and terraform plans as Markdown."""

from __future__ import annotations

import re

from prefect.artifacts import create_markdown_artifact

from sandbox.drivers.terraform import PlanSummary


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) from ``parts``.

    Runs of other characters become one dash; dashes the parts hold are kept, so
    sandboxes ``a--b`` and ``a-b`` never share a key.
    """
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def publish_plan(key: str, title: str, plan: PlanSummary) -> None:
    """Publish a terraform plan as a Markdown artifact of the running task.

    The plan's text is already redacted by the driver; outputs marked sensitive
    are shown by Terraform as ``(sensitive value)``.
    """
    create_markdown_artifact(markdown=plan.markdown(title), key=key, description=plan.summary_line())
