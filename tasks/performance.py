"""Prefect tasks of the ``performance_sandbox`` flow, and its teardown outside tasks.

* :func:`register_performance_task` validates the request, creates the
  performance sandbox's inventory record and the run's row in ``perf_runs``.
* :func:`record_performance_task` stores what the run measured, draws the
  chart and publishes the comparison as a table artifact and a Markdown summary.
* :func:`record_performance_failure_task` stores why a run ended without a result.
* :func:`cleanup_performance_task` removes what a torn-down performance
  sandbox leaves: its branch on the fleet remote and its state directory.
* :func:`teardown_without_task` runs the teardown stage as plain code, with the
  inventory bookkeeping of a stage: once a flow run is being cancelled Prefect
  refuses to start its tasks (``PreventRunningTasksFromStoppedFlows``), so the
  flow's cancellation path and its ``on_cancellation`` / ``on_crashed`` hooks
  cannot use the teardown task.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from sandbox.config import FleetConfig, load_config
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import SandboxKind, SandboxStatus, Stage, StageResult
from sandbox.perf.chart import write_chart
from sandbox.perf.compare import Comparison, PerformanceReport, markdown_summary, render_table, table_rows
from sandbox.perf.scenario import PerformanceRequest, ScenarioSettings, resolve_scenario
from sandbox.perf.store import PerfRunStatus, PerfStore
from sandbox.run_summary import image_markdown
from sandbox.stages.performance import preflight, reports_dir
from sandbox.stages.register import register, validate_request
from sandbox.stages.teardown import teardown
from sandbox.wiring import build_drivers, open_inventory, sandbox_state_dir
from tasks.artifacts import artifact_key, create_markdown_artifact, create_table_artifact
from tasks.common import stage_context

#: Longest source-environment part of a performance sandbox's name.
_SOURCE_IN_NAME = 20


class PerformanceRun(BaseModel):
    """A registered performance run: its sandbox and where its configuration lives."""

    config_path: str
    run_id: str = Field(description="The run's id: the sandbox lifecycle's id")
    sandbox: str
    scenario: str
    source_env: str


def performance_sandbox_name(source_env: str) -> str:
    """A fresh name ``perf-<source>-<8 hex>`` (each run, and each retry, gets its own sandbox)."""
    source = re.sub(r"[^a-z0-9-]+", "-", source_env.lower())[:_SOURCE_IN_NAME].strip("-") or "env"
    return f"perf-{source}-{uuid.uuid4().hex[:8]}"


@task(name="register-performance-run", task_run_name="prepare: register performance run", persist_result=True)
def register_performance_task(request: PerformanceRequest, flow_run_id: str | None = None) -> PerformanceRun:
    """Validate the request; create the performance sandbox's record and the run's row.

    Args:
        request: The flow's parameters.
        flow_run_id: The flow run (the cancellation hooks find the run by it).

    Raises:
        InvalidInputError: Unknown environment or scenario, bad TTL, scale or change.
    """
    config = load_config(request.config_path)
    settings = resolve_scenario(config, request.scenario, request.load)
    preflight(config, settings)
    lifecycle_request = LifecycleRequest(
        config_path=request.config_path,
        name=performance_sandbox_name(request.source_env),
        source_env=request.source_env,
        kind=SandboxKind.performance,
        ttl=request.ttl,
        overrides=request.terraform_overrides(),
        change=request.change,
        owner=request.owner,
    )
    validated = validate_request(config, lifecycle_request)
    inventory = open_inventory(config)
    try:
        record = register(config, inventory, validated, resume=False)
    finally:
        inventory.close()
    with PerfStore(config.inventory_url) as store:
        store.start_run(
            run_id=record.lifecycle_id,
            scenario=settings.scenario,
            source_env=record.source_env,
            sandbox=record.name,
            settings=settings.model_dump(),
            flow_run_id=flow_run_id,
        )
    get_run_logger().info(
        f"performance run {record.lifecycle_id}: scenario {settings.scenario} against a clone of "
        f"{record.source_env} in sandbox {record.name}"
    )
    return PerformanceRun(
        config_path=request.config_path,
        run_id=record.lifecycle_id,
        sandbox=record.name,
        scenario=settings.scenario,
        source_env=record.source_env,
    )


@task(name="record-performance-run", task_run_name="report: record performance run")
def record_performance_task(run: PerformanceRun, result: StageResult) -> PerformanceReport:
    """Store the run's measurement and verdict; publish the chart, a table artifact and a Markdown summary.

    Args:
        run: The registered run.
        result: The performance-test stage's result.
    """
    config = load_config(run.config_path)
    details: dict[str, Any] = result.details
    settings = ScenarioSettings.model_validate(details["settings"])
    comparison = Comparison.model_validate(details["comparison"])
    metrics: dict[str, Any] = dict(details["metrics"])
    chart = comparison_chart(config, run.run_id, run.source_env, details)
    with PerfStore(config.inventory_url) as store:
        store.finish_run(
            run.run_id,
            status=PerfRunStatus.passed if comparison.passed else PerfRunStatus.failed,
            settings=settings.model_dump(),
            metrics=metrics,
            comparison=comparison.model_dump(),
            baseline_run_id=comparison.baseline_run_id,
            chart_path=str(chart),
        )
    publish_comparison(
        config,
        key=artifact_key("perf", run.scenario, run.source_env),
        summary_key=artifact_key("perf-summary", run.scenario, run.source_env),
        run_id=run.run_id,
        sandbox=run.sandbox,
        source_env=run.source_env,
        details=details,
        chart=chart,
    )
    max_error_rate = config.performance.max_error_rate
    logger = get_run_logger()
    for line in render_table(comparison, max_error_rate).splitlines():
        logger.info(line)
    logger.info(f"chart: {chart}")
    return PerformanceReport(
        run_id=run.run_id,
        sandbox=run.sandbox,
        scenario=run.scenario,
        source_env=run.source_env,
        passed=comparison.passed,
        settings=settings,
        metrics=metrics,
        comparison=comparison,
        chart_path=str(chart),
    )


def result_source_env(config: FleetConfig, sandbox: str, details: dict[str, Any]) -> str:
    """The environment a performance-test stage result was compared in (its baseline's).

    The stage's details carry it; a result checkpointed before they did (a lifecycle resumed
    across an upgrade) falls back to the sandbox's inventory record.
    """
    if details.get("source_env"):
        return str(details["source_env"])
    inventory = open_inventory(config)
    try:
        return inventory.get(sandbox).source_env
    finally:
        inventory.close()


def comparison_chart(config: FleetConfig, run_id: str, source_env: str, details: dict[str, Any]) -> Path:
    """Draw a performance-test result against its baseline: ``<reports>/<run id>/comparison.png``.

    Args:
        config: The fleet.
        run_id: The run (the lifecycle id).
        source_env: The environment the sandbox cloned (in the title).
        details: The performance-test stage result's details.
    """
    comparison = Comparison.model_validate(details["comparison"])
    baseline = details.get("baseline") or None
    scenario = str(details.get("scenario") or "")
    return write_chart(
        reports_dir(config, run_id) / "comparison.png",
        dict(details["metrics"]),
        baseline["metrics"] if baseline else None,
        title=(
            f"{scenario} from {source_env}: run {run_id}"
            + (f" vs baseline {comparison.baseline_run_id}" if comparison.baseline_run_id else " (no baseline)")
        ),
        failed_metrics=frozenset(r.metric for r in comparison.rows if r.verdict == "fail"),
    )


def publish_comparison(
    config: FleetConfig,
    *,
    key: str,
    summary_key: str,
    run_id: str,
    sandbox: str,
    source_env: str,
    details: dict[str, Any],
    chart: Path,
) -> None:
    """Publish a performance result as a table artifact and a Markdown summary with the chart inline.

    The keys stay the same run after run (per environment, or per sandbox), so
    each run lands in its key's history next to the previous ones.
    """
    settings = ScenarioSettings.model_validate(details["settings"])
    comparison = Comparison.model_validate(details["comparison"])
    scenario = settings.scenario
    max_error_rate = config.performance.max_error_rate
    create_table_artifact(
        table=table_rows(comparison, max_error_rate),
        key=key,
        description=(
            f"Performance run {run_id} ({scenario} from {source_env}) vs "
            + (f"baseline {comparison.baseline_run_id}" if comparison.baseline_run_id else "no baseline")
            + f": {'passed' if comparison.passed else 'FAILED'}"
        ),
    )
    markdown = markdown_summary(
        run_id=run_id,
        settings=settings,
        source_env=source_env,
        sandbox=sandbox,
        comparison=comparison,
        max_error_rate=max_error_rate,
        chart_path=str(chart),
    )
    image = image_markdown(chart, f"{scenario} from {source_env} against its baseline")
    create_markdown_artifact(
        markdown=markdown + (f"\n{image}\n" if image else ""),
        key=summary_key,
        description=f"Performance run {run_id}: summary",
    )


def record_failure(run: PerformanceRun, status: PerfRunStatus, message: str) -> None:
    """Store why a run ended without a result (plain code: usable while the flow run is cancelling)."""
    config = load_config(run.config_path)
    with PerfStore(config.inventory_url) as store:
        current = store.find(run.run_id)
        if current is not None and current.status is PerfRunStatus.running:
            store.finish_run(run.run_id, status=status, error=message[:2000])


@task(name="record-performance-failure", task_run_name="report: record performance failure")
def record_performance_failure_task(run: PerformanceRun, message: str) -> None:
    """Store why a run ended without a result (status ``error``)."""
    record_failure(run, PerfRunStatus.error, message)


@task(name="cleanup-performance-sandbox", task_run_name="after teardown: remove branch and state")
def cleanup_performance_task(run: PerformanceRun) -> list[str]:
    """Remove a torn-down performance sandbox's branch from the fleet remote and its state directory.

    Performance sandboxes are never promoted: once the cluster is gone, the
    branch that carried its cluster directory and the local checkout are
    leftovers. Nothing is removed unless the inventory says the sandbox is
    destroyed.

    Returns:
        What was removed.
    """
    config = load_config(run.config_path)
    inventory = open_inventory(config)
    try:
        record = inventory.get(run.sandbox)
    finally:
        inventory.close()
    logger = get_run_logger()
    if record.status is not SandboxStatus.destroyed:
        logger.warning(f"{run.sandbox} is {record.status.value}, not destroyed: its branch and state are kept")
        return []
    removed: list[str] = []
    state = sandbox_state_dir(config, run.sandbox)
    checkout = state / "repo"
    drivers = build_drivers(config)
    if record.branch and (checkout / ".git").is_dir():
        git = drivers.git
        git.fetch(checkout)
        if git.rev_parse(checkout, f"refs/remotes/origin/{record.branch}") is not None:
            git.delete_remote_branch(checkout, record.branch)
            removed.append(f"branch {record.branch} on the fleet remote")
    if state.is_dir():
        shutil.rmtree(state)
        removed.append(f"state directory {state}")
    for item in removed:
        logger.info(f"removed {item}")
    return removed


def teardown_without_task(config_path: str, name: str, lifecycle_id: str, logger: Any = None) -> StageResult | None:
    """The teardown stage as plain code, with the stage's inventory bookkeeping.

    For when Prefect will not start a task: the flow run is being cancelled, or
    a hook runs after it ended. Idempotent: does nothing for a sandbox that is
    destroyed or whose teardown stage completed.

    Args:
        config_path: fleet.yaml.
        name: The sandbox.
        lifecycle_id: Its lifecycle.
        logger: Where progress goes (the flow run's logger in a hook).

    Returns:
        The teardown's result, or ``None`` when there was nothing to do.
    """
    log = logger or logging.getLogger("fleet_sandbox.performance")
    config = load_config(config_path)
    inventory = open_inventory(config)
    try:
        record = inventory.find(name)
        if record is None or record.status is SandboxStatus.destroyed:
            return None
        if inventory.stage_result(name, lifecycle_id, Stage.teardown) is not None:
            return None
        log.info(f"tearing down {name} outside a task (the flow run was interrupted)")
        # The context every stage task gets (the same secrets), not a task of its own.
        ctx = stage_context(config, name, inventory=inventory, progress=log.info)
        with inventory.recording_stage(name, lifecycle_id, Stage.teardown) as recording:
            result = recording.complete(teardown(ctx))
        log.info(f"teardown: {result.summary}")
        return result
    finally:
        inventory.close()


def teardown_flow_run_sandboxes(config_path: str, flow_run_id: str, *, status: PerfRunStatus, logger: Any) -> int:
    """Tear down every sandbox a flow run's performance runs left, and close those runs.

    Used by the flow's ``on_cancellation`` and ``on_crashed`` hooks.

    Returns:
        How many sandboxes were torn down.
    """
    config = load_config(config_path)
    with PerfStore(config.inventory_url) as store:
        runs = store.runs_for_flow_run(flow_run_id)
    done = 0
    for perf_run in runs:
        inventory = open_inventory(config)
        try:
            record = inventory.find(perf_run.sandbox)
        finally:
            inventory.close()
        if record is not None and teardown_without_task(config_path, record.name, record.lifecycle_id, logger):
            done += 1
        run = PerformanceRun(
            config_path=config_path,
            run_id=perf_run.run_id,
            sandbox=perf_run.sandbox,
            scenario=perf_run.scenario,
            source_env=perf_run.source_env,
        )
        record_failure(run, status, f"flow run {status.value}")
    return done
