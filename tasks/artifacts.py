"""Prefect artifacts the tasks publish: their keys, redacted creation, and terraform plans as Markdown.

Artifacts live in Prefect's database and are shown in its UI, so every text is
redacted (:mod:`sandbox.redaction`) before it is sent: tasks create artifacts
through this module, never through ``prefect.artifacts`` directly.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.drivers.terraform import PlanSummary
from sandbox.redaction import redact_value


def create_markdown_artifact(**options: Any) -> Any:
    """Prefect's ``create_markdown_artifact`` with every text redacted first."""
    from prefect.artifacts import create_markdown_artifact as create

    return create(**redact_value(options))


def create_table_artifact(**options: Any) -> Any:
    """Prefect's ``create_table_artifact`` with every cell and the description redacted first."""
    from prefect.artifacts import create_table_artifact as create

    return create(**redact_value(options))


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
