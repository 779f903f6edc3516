"""The lifecycle run's summary artifact: stage → result, the pull request, the performance chart.

Published by the flow itself (plain code, not a task: it also runs after a
failure, while the flow run ends) under a key stable per sandbox,
``lifecycle-<sandbox>``, so each run of a sandbox lands in that key's history.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sandbox.config import load_config
from sandbox.models import Stage
from sandbox.perf.compare import Comparison, table_rows
from sandbox.redaction import redact
from sandbox.run_summary import StageLine, image_markdown, lifecycle_summary
from tasks.artifacts import artifact_key, create_markdown_artifact
from tasks.performance import comparison_chart, result_source_env

#: The artifacts a stage publishes when it runs, by stage (see the stage tasks).
STAGE_ARTIFACTS: dict[Stage, tuple[str, ...]] = {
    Stage.provision: ("provision-plan",),
    Stage.validate: ("validation",),
    Stage.performance_test: ("perf", "perf-summary"),
}


def summary_key(name: str) -> str:
    """The summary artifact's key of a sandbox."""
    return artifact_key("lifecycle", name)


def publish_lifecycle_summary(
    config_path: str,
    name: str,
    lifecycle_id: str,
    *,
    lines: Sequence[StageLine],
    results: Mapping[Stage, Mapping[str, Any]],
    failed: str | None,
    logger: Any = None,
) -> str | None:
    """Publish the run's summary as a Markdown artifact of the flow run; never raises.

    A summary that cannot be published (the server unreachable, the fleet's
    configuration unreadable) is logged as a warning: it must not hide how the run went.

    Args:
        config_path: fleet.yaml.
        name: The sandbox.
        lifecycle_id: Its lifecycle.
        lines: Each planned stage with its outcome, in lifecycle order.
        results: Stage → its result's details, for the stages that finished.
        failed: Why the run failed, if it did.
        logger: Where a warning goes.

    Returns:
        The artifact's key, or ``None`` when it could not be published.
    """
    log = logger or logging.getLogger("fleet_sandbox.summary")
    try:
        config = load_config(config_path)
        chart = None
        performance: list[dict[str, str]] = []
        perf = results.get(Stage.performance_test)
        if perf and perf.get("comparison"):
            source_env = result_source_env(config, name, dict(perf))
            performance = table_rows(Comparison.model_validate(perf["comparison"]), config.performance.max_error_rate)
            path = comparison_chart(config, lifecycle_id, source_env, dict(perf))
            chart = image_markdown(path, f"performance of {name} against its baseline")
        executed = {line.stage for line in lines if line.outcome in {"executed", "failed"}}
        artifacts = [
            artifact_key(prefix, name)
            for stage, prefixes in STAGE_ARTIFACTS.items()
            if stage in executed
            for prefix in prefixes
        ]
        key = summary_key(name)
        create_markdown_artifact(
            key=key,
            markdown=lifecycle_summary(
                name=name,
                lifecycle_id=lifecycle_id,
                lines=lines,
                results=results,
                failed=failed,
                performance=performance,
                chart=chart,
                artifacts=artifacts,
            ),
            description=f"Sandbox {name}, lifecycle {lifecycle_id}: "
            + (f"FAILED: {failed}" if failed else "completed"),
        )
        return key
    except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more than its summary
        log.warning(redact(f"the run's summary artifact was not published: {type(exc).__name__}: {exc}"))
        return None
