"""The performance-sandbox flow: clone a long-lived environment at its scale, load it, compare, tear it down.

provision → clone → bootstrap → validate → performance test, then **always**
teardown, then the result is recorded (``perf_runs``, chart, artifacts). A
failed gate fails the flow run after the result is recorded, so a scheduled
run that regressed shows up as Failed.

How "always" is kept:

* ``try``/``finally`` in the flow: after an ordinary failure of any stage the
  teardown task runs (the flow run is still Running, so Prefect starts tasks).
* A cancellation or termination (``TerminationSignal``, ``KeyboardInterrupt``)
  reaching the flow body: the flow run may already be Cancelling, and Prefect
  refuses to start a task then; the ``finally`` tears down as plain code
  (:func:`tasks.performance.teardown_without_task`).
* ``on_cancellation`` / ``on_crashed`` hooks: when the process running the flow
  is stopped before its ``finally`` could finish (a worker's kill after the
  grace period), the runner or worker runs these hooks, which tear down what
  the flow run's performance runs left. Every path is idempotent.

A process killed with no hook at all (``kill -9`` of the worker) is what the
nightly cleanup of expired sandboxes is for; every performance sandbox has a TTL.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, get_run_logger
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import flow_run as current_flow_run

from flows.lifecycle import run_stages
from sandbox.hardening import harden_process
from sandbox.models import Stage, StageResult
from sandbox.perf.compare import PerformanceReport
from sandbox.perf.scenario import PerformanceRequest
from sandbox.perf.store import PerfRunStatus
from tasks.common import StageRequest
from tasks.performance import (
    PerformanceRun,
    cleanup_performance_task,
    record_failure,
    record_performance_failure_task,
    record_performance_task,
    register_performance_task,
    teardown_flow_run_sandboxes,
    teardown_without_task,
)
from tasks.performance_test_stage import performance_test_task
from tasks.teardown import teardown_task

#: The stages before the load, in order.
SETUP_STAGES = [Stage.provision, Stage.clone, Stage.bootstrap, Stage.validate]


def _config_path(flow_run: Any) -> str | None:
    request = (getattr(flow_run, "parameters", None) or {}).get("request")
    if isinstance(request, PerformanceRequest):
        return request.config_path
    if isinstance(request, dict):
        return PerformanceRequest.model_validate(request).config_path
    return PerformanceRequest().config_path if request is None else None


def _teardown_hook(status: PerfRunStatus) -> Any:
    def hook(flow: Any, flow_run: Any, state: Any) -> None:
        logger = flow_run_logger(flow_run, flow)
        config_path = _config_path(flow_run)
        if config_path is None:
            logger.error("cannot read the performance request of this flow run: nothing torn down")
            return
        done = teardown_flow_run_sandboxes(config_path, str(flow_run.id), status=status, logger=logger)
        logger.info(f"flow run {state.name}: {done} performance sandbox(es) torn down by the hook")

    hook.__name__ = f"teardown_on_{status.value}"
    return hook


#: Hooks: tear down after a cancellation or a crash the flow body could not handle.
teardown_on_cancellation = _teardown_hook(PerfRunStatus.cancelled)
teardown_on_crash = _teardown_hook(PerfRunStatus.error)


def _always_teardown(run: PerformanceRun, stage_request: StageRequest, interrupted: BaseException | None) -> None:
    """Tear the sandbox down whatever happened before, the right way for how it happened."""
    logger = get_run_logger()
    if interrupted is None or isinstance(interrupted, Exception):
        if interrupted is not None:
            cause = str(interrupted) or type(interrupted).__name__
            record_performance_failure_task(run, cause)
            logger.info(f"tearing down {run.sandbox} after a failure: {cause}")
        try:
            teardown_task(stage_request)
        except Exception as exc:
            if interrupted is None:  # the load ran, but a run whose sandbox is still up is no result
                record_performance_failure_task(run, f"teardown failed: {exc}")
            raise
        cleanup_performance_task(run)
        return
    # Cancelled or terminated: Prefect may refuse to start tasks now.
    logger.info(f"{type(interrupted).__name__}: tearing down {run.sandbox} without tasks")
    record_failure(run, PerfRunStatus.cancelled, f"interrupted ({type(interrupted).__name__})")
    teardown_without_task(run.config_path, run.sandbox, run.run_id, logger)


@flow(
    name="performance-sandbox",
    flow_run_name="perf-{request.source_env}",
    on_cancellation=[teardown_on_cancellation],
    on_crashed=[teardown_on_crash],
    log_prints=True,
)
def performance_sandbox(request: PerformanceRequest = PerformanceRequest()) -> PerformanceReport:  # noqa: B008
    """Load-test a short-lived clone of a long-lived environment against the scenario's baseline.

    Args:
        request: Source environment (default production), scenario, scale
            (``source`` or terraform overrides), a configuration change to test,
            TTL, and per-run load settings.

    Returns:
        The run's metrics, the comparison with its baseline and the chart's path.

    Raises:
        PerformanceGateError: A gate failed (after the result was recorded).
    """
    harden_process()  # private files and redacted logs, wherever this flow runs
    flow_run_id = current_flow_run.get_id()
    run = register_performance_task(request, flow_run_id=str(flow_run_id) if flow_run_id else None)
    stage_request = StageRequest(
        config_path=run.config_path, name=run.sandbox, lifecycle_id=run.run_id, change=request.change
    )
    result: StageResult | None = None
    try:
        run_stages(stage_request, SETUP_STAGES)
        result = performance_test_task(stage_request, scenario=run.scenario, overrides=request.load, publish=False)
    finally:
        _always_teardown(run, stage_request, sys.exc_info()[1])
    if result is None:  # unreachable: the try block either set it or raised
        raise RuntimeError("the performance-test stage returned no result")
    report = record_performance_task(run, result)
    if not report.passed:
        raise report.gate_error()
    return report
