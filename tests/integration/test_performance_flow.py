"""The performance_sandbox flow always tears its sandbox down: when the load fails, when it is cancelled,
and (through its hooks) when the flow run is stopped before its own cleanup could run.

Real git, terraform, the simulated cluster, locust and a Prefect server; the flow runs in-process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prefect.client.schemas.objects import FlowRun

from sandbox.config import FleetConfig, load_config
from sandbox.demo import prepare_demo
from sandbox.models import SandboxKind, SandboxStatus, Stage, StageStatus
from sandbox.perf.scenario import PerformanceRequest, ScaleOverride
from sandbox.perf.store import PerfRun, PerfRunStatus, PerfStore
from sandbox.stages.performance import reports_dir
from sandbox.wiring import open_inventory, sandbox_state_dir

pytestmark = pytest.mark.integration


def configure(workdir: Path, load_generator: dict[str, Any]) -> Path:
    config_path = prepare_demo(workdir)
    document = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    document["drivers"]["load_generator"] = load_generator
    document["drivers"]["cluster"]["simulation"] = {"readiness_delay_seconds": 0.05}
    config_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return config_path


def perf_runs(config: FleetConfig) -> list[PerfRun]:
    with PerfStore(config.inventory_url) as store:
        return store.list()


def assert_nothing_left(config: FleetConfig, run: PerfRun) -> None:
    """The sandbox is destroyed in the inventory, its teardown stage completed, its infrastructure gone."""
    inventory = open_inventory(config)
    try:
        record = inventory.get(run.sandbox)
    finally:
        inventory.close()
    assert record.kind is SandboxKind.performance
    assert record.status is SandboxStatus.destroyed, record.last_error
    teardown = next(s for s in record.stages if s.name is Stage.teardown)
    assert (teardown.status, teardown.executions) == (StageStatus.completed, 1)
    state = sandbox_state_dir(config, run.sandbox)
    # No simulated cluster and no terraform state with resources in it remain.
    assert not (state / "simulated-cluster").exists()
    for tfstate in state.rglob("*.tfstate"):
        assert '"resources": []' in tfstate.read_text(), tfstate


def test_teardown_runs_when_the_load_stage_fails(prefect_server: str, tmp_path: Path) -> None:
    from flows.performance import performance_sandbox
    from sandbox.errors import ToolNotFoundError

    config_path = configure(
        tmp_path / "demo",
        {"type": "locust", "duration_seconds": 1, "locust": {"command": ["/nonexistent/bin/locust"]}},
    )
    request = PerformanceRequest(
        config_path=str(config_path), scenario="smoke", scale=ScaleOverride(variables={"node_count": "5"})
    )
    state = performance_sandbox(request=request, return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, ToolNotFoundError) and "/nonexistent/bin/locust is not installed" in str(error)
    config = load_config(config_path)
    [run] = perf_runs(config)
    assert run.status is PerfRunStatus.error and "/nonexistent/bin/locust" in (run.error or "")
    assert run.metrics is None and run.flow_run_id == str(state.state_details.flow_run_id)
    assert_nothing_left(config, run)
    inventory = open_inventory(config)
    try:
        record = inventory.get(run.sandbox)
    finally:
        inventory.close()
    load_stage = next(s for s in record.stages if s.name is Stage.performance_test)
    assert load_stage.status is StageStatus.failed
    assert record.overrides == {"node_count": "5"}  # provisioned at the requested scale


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def test_teardown_runs_when_the_load_stage_is_cancelled(prefect_server: str, tmp_path: Path) -> None:
    """Cancel as the UI and a worker do: the run goes Cancelling, then the process gets SIGTERM mid-load."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import TerminationSignal
    from prefect.states import Cancelling

    from flows.performance import performance_sandbox

    config_path = configure(tmp_path / "demo", {"type": "locust", "users": 2, "duration_seconds": 30})
    config = load_config(config_path)
    cancelled: dict[str, Any] = {}

    def cancel_during_the_load() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = perf_runs(config)
            if runs and (reports_dir(config, runs[0].run_id) / "load" / "fleet_sandbox_locustfile.py").exists():
                run = runs[0]
                # locust is being started: wait until its process exists.
                while time.monotonic() < deadline and not _processes_mentioning(str(reports_dir(config, run.run_id))):
                    time.sleep(0.05)
                cancelled["locust"] = _processes_mentioning(str(reports_dir(config, run.run_id)))
                with get_client(sync_client=True) as client:
                    client.set_flow_run_state(run.flow_run_id, Cancelling(), force=True)  # type: ignore[arg-type]
                handler = signal.getsignal(signal.SIGTERM)
                cancelled["handler"] = handler
                cancelled["at"] = time.monotonic()
                if getattr(handler, "__module__", "").startswith("prefect"):
                    os.kill(os.getpid(), signal.SIGTERM)  # what a worker does to a cancelled flow run
                return
            time.sleep(0.05)

    # Prefect passes the SIGTERM on to the handler it replaced once the flow run has ended
    # (to end the process, in a worker); here that handler only records it.
    passed_on: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: passed_on.append(signum))
    canceller = threading.Thread(target=cancel_during_the_load, daemon=True)
    canceller.start()
    try:
        with pytest.raises(TerminationSignal):
            performance_sandbox(request=PerformanceRequest(config_path=str(config_path)), return_state=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    canceller.join(10)
    assert cancelled.get("locust"), "locust never started"
    assert getattr(cancelled["handler"], "__module__", "").startswith("prefect"), "no Prefect SIGTERM handler"
    assert passed_on == [signal.SIGTERM]
    # The 30 s load was interrupted: the flow ended (teardown included) well before it would have.
    assert time.monotonic() - cancelled["at"] < 25, "the load was not interrupted"
    [run] = perf_runs(config)
    assert run.status is PerfRunStatus.cancelled and run.metrics is None
    assert_nothing_left(config, run)
    assert not _processes_mentioning(str(reports_dir(config, run.run_id))), "locust outlived the cancellation"
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run.flow_run_id)  # type: ignore[arg-type]
    assert flow_run.state is not None and flow_run.state.type.value in ("CRASHED", "CANCELLED")


def test_the_cancellation_hook_tears_down_what_a_killed_run_left(prefect_server: str, tmp_path: Path) -> None:
    """A worker killed the flow's process before its ``finally`` ran; the runner then runs the hook."""
    from flows.lifecycle import sandbox_lifecycle
    from flows.performance import performance_sandbox, teardown_on_cancellation
    from sandbox.lifecycle_request import LifecycleRequest

    config_path = configure(tmp_path / "demo", {"type": "http", "duration_seconds": 1})
    config = load_config(config_path)
    killed = uuid.uuid4()
    # A performance sandbox left provisioned and validated, as the killed run left it.
    sandbox_lifecycle(
        request=LifecycleRequest(
            config_path=str(config_path),
            name="perf-production-killed",
            source_env="production",
            kind=SandboxKind.performance,
            stop_after=Stage.validate,
        )
    )
    inventory = open_inventory(config)
    try:
        record = inventory.get("perf-production-killed")
    finally:
        inventory.close()
    assert record.status is SandboxStatus.active
    assert (sandbox_state_dir(config, record.name) / "simulated-cluster").is_dir()
    with PerfStore(config.inventory_url) as store:
        store.start_run(
            run_id=record.lifecycle_id,
            scenario="smoke",
            source_env="production",
            sandbox=record.name,
            flow_run_id=str(killed),
        )
    flow_run = FlowRun(
        id=killed,
        name="perf-production",
        flow_id=uuid.uuid4(),
        parameters={"request": {"config_path": str(config_path), "source_env": "production"}},
    )
    teardown_on_cancellation(performance_sandbox, flow_run, SimpleNamespace(name="Cancelling"))
    [run] = perf_runs(config)
    assert run.status is PerfRunStatus.cancelled
    assert_nothing_left(config, run)
    # Idempotent: the hook again (the engine's and the runner's) changes nothing.
    teardown_on_cancellation(performance_sandbox, flow_run, SimpleNamespace(name="Cancelled"))
    assert perf_runs(config)[0].status is PerfRunStatus.cancelled
