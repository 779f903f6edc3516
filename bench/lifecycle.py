"""The demo lifecycle through Prefect: what orchestration adds, and what a resume costs.

* ``lifecycle_overhead_ratio`` -- the demo lifecycle as the ``sandbox-lifecycle``
  flow against a Prefect server that is already up, divided by the same stage
  functions of ``sandbox.stages`` called directly with the same drivers and
  the same fleet.yaml (so the same simulated readiness delay and load duration).
* ``resume_after_last_stage_ratio`` -- a flow run that failed at the last stage
  (promote), resumed, divided by a full flow run. The failure comes from the
  outside: the fleet remote's ``pre-receive`` hook refuses the first push of a
  promotion commit, as a push freeze or branch protection would. Nothing in the
  product knows about it.

Each repetition uses fresh demo setups; the two sides of a ratio run back to
back, in alternating order, so they share the machine's load.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import (
    WORK_DIR,
    BenchError,
    DirectLifecycle,
    Metric,
    bench_request,
    discard,
    elapsed,
    fresh_dir,
    log,
    new_workdir,
    prepare_bench_demo,
)
from bench.profiling import Profiler
from sandbox.config import load_config
from sandbox.models import STAGE_ORDER, Stage
from sandbox.wiring import open_inventory

#: Repetitions of each side (the figures are medians).
REPETITIONS = 5
#: Seconds a starting Prefect server may take on a loaded machine.
SERVER_STARTUP_TIMEOUT = 300
#: Where this group works.
GROUP_DIR = WORK_DIR / "lifecycle"
#: Where Prefect keeps its home, database and results during the benchmark.
PREFECT_DIR = WORK_DIR / "prefect"

#: The remote's marker file: while it exists, the next promotion push is refused.
FREEZE_MARKER = "refuse-next-promotion"

_PRE_RECEIVE = """#!/bin/sh
# Written by the benchmark (bench/lifecycle.py): refuse the first push of a
# promotion commit while the marker file exists, as a push freeze would.
marker={marker}
while read -r old new ref; do
    if [ -e "$marker" ] && git log -1 --format=%s "$new" | grep -q 'promote '; then
        rm -f "$marker"
        echo "pushes that promote a sandbox are frozen right now" >&2
        exit 1
    fi
done
exit 0
"""


def configure_prefect() -> None:
    """Point Prefect's home, database and results into ``bench/.work`` (call before importing Prefect).

    Results are persisted as the CLI persists them (``cli/prefect_env.py``). The
    console stays quiet (the benchmark checks every outcome itself, and one run
    fails on purpose), while the API still receives every log line.
    """
    home = PREFECT_DIR / "home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home)
    os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(PREFECT_DIR / "results")
    os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "true"
    os.environ["PREFECT_LOGGING_LOG_PRINTS"] = "true"
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        os.environ.pop(name, None)


@dataclass(frozen=True)
class RunningServer:
    """The Prefect server the flows run against."""

    api_url: str
    pid: int | None


@contextmanager
def prefect_server() -> Iterator[RunningServer]:
    """A Prefect server in a subprocess on a free port, for the duration."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cli.prefect_env import quiet_expected_tracebacks

    server = SubprocessASGIServer()
    server.start(timeout=SERVER_STARTUP_TIMEOUT)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            quiet_expected_tracebacks()
            try:
                pid = server.server_process.pid if server.server_process is not None else None
                yield RunningServer(api_url=server.api_url, pid=pid)
            finally:
                # Send what is queued before the server goes away.
                APILogWorker.drain_all(timeout=30)
                EventsWorker.drain_all(timeout=30)
    finally:
        server.stop()


def install_promotion_freeze(config_path: Path) -> Path:
    """Give the demo's bare remote a ``pre-receive`` hook that can refuse one promotion push.

    Returns:
        The marker file: create it to make the next promotion push fail.
    """
    remote = Path(load_config(config_path).remote_url.removeprefix("file://"))
    if not (remote / "HEAD").is_file():
        raise BenchError(f"the demo's remote {remote} is not a bare git repository")
    marker = remote / FREEZE_MARKER
    hook = remote / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(_PRE_RECEIVE.format(marker=shlex.quote(str(marker))), encoding="utf-8")
    hook.chmod(0o755)
    return marker


def prepare(workdir: Path) -> Path:
    """A fresh demo setup whose remote carries the promotion freeze hook (unarmed); its fleet.yaml."""
    config_path = prepare_bench_demo(workdir)
    install_promotion_freeze(config_path)
    return config_path


def run_direct(config_path: Path) -> None:
    """The whole demo lifecycle through the stage functions."""
    lifecycle = DirectLifecycle(config_path)
    try:
        lifecycle.run(STAGE_ORDER)
    finally:
        lifecycle.close()


def run_flow(config_path: Path, *, resume: bool = False) -> Any:
    """The demo lifecycle as the ``sandbox-lifecycle`` flow, as the CLI runs it; returns its final state."""
    from cli.common import call_flow
    from flows.lifecycle import sandbox_lifecycle

    return call_flow(sandbox_lifecycle, request=bench_request(config_path), resume=resume)


def _completed(state: Any, what: str) -> Any:
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        raise BenchError(f"{what}: flow run ended {state.name}: {error}")
    return state.result()


def run_flow_checked(config_path: Path) -> None:
    """A full flow run that must complete."""
    _completed(run_flow(config_path), "full lifecycle")


def fail_at_promote(config_path: Path) -> None:
    """A flow run that fails at promote (the remote refuses its push); checked in the inventory."""
    marker = install_promotion_freeze(config_path)
    marker.touch()
    log("a run fails at promote on purpose now (the remote refuses the promotion push)")
    state = run_flow(config_path)
    if state.is_completed() or marker.exists():
        raise BenchError("the injected promotion failure did not happen")
    config = load_config(config_path)
    inventory = open_inventory(config)
    try:
        record = inventory.get(bench_request(config_path).name)
    finally:
        inventory.close()
    if record.failed_stage != Stage.promote.value:
        raise BenchError(f"the run failed at {record.failed_stage!r}, not at promote: {record.last_error}")


def resume_checked(config_path: Path) -> None:
    """Resume a run that failed at promote; only promote may execute."""
    report = _completed(run_flow(config_path, resume=True), "resumed lifecycle")
    executed = [o.stage for o in report.stages if o.outcome == "executed"]
    if executed != [Stage.promote]:
        raise BenchError(f"the resumed run executed {[s.value for s in executed]}, expected only promote")


def _profile_flow(profiler: Profiler) -> None:
    config_path = prepare(new_workdir(GROUP_DIR, "profile"))
    profiler.call(partial(run_flow_checked, config_path))


def _profile_resume(profiler: Profiler) -> None:
    config_path = prepare(new_workdir(GROUP_DIR, "profile"))
    fail_at_promote(config_path)
    profiler.call(partial(resume_checked, config_path))


def run(repetitions: int = REPETITIONS) -> list[Metric]:
    """Both metrics; needs :func:`prefect_server` around it."""
    fresh_dir(GROUP_DIR)
    log("lifecycle: warming up (one direct run, one flow run; not counted)")
    run_direct(prepare(new_workdir(GROUP_DIR, "warmup-direct")))
    run_flow_checked(prepare(new_workdir(GROUP_DIR, "warmup-flow")))
    overhead: list[float] = []
    resume: list[float] = []
    for index in range(repetitions):
        direct_dir, flow_dir, resume_dir = (new_workdir(GROUP_DIR, side) for side in ("direct", "flow", "resume"))
        direct_config, flow_config, resume_config = prepare(direct_dir), prepare(flow_dir), prepare(resume_dir)
        if index % 2 == 0:
            direct = elapsed(partial(run_direct, direct_config))
            full = elapsed(partial(run_flow_checked, flow_config))
        else:
            full = elapsed(partial(run_flow_checked, flow_config))
            direct = elapsed(partial(run_direct, direct_config))
        fail_at_promote(resume_config)
        resumed = elapsed(partial(resume_checked, resume_config))
        overhead.append(full / direct)
        resume.append(resumed / full)
        log(
            f"lifecycle {index + 1}/{repetitions}: direct {direct:.2f}s, flow {full:.2f}s, "
            f"resume {resumed:.2f}s -> overhead {overhead[-1]:.3f}, resume {resume[-1]:.3f}"
        )
        for directory in (direct_dir, flow_dir, resume_dir):
            discard(directory)
    return [
        Metric(
            name="lifecycle_overhead_ratio",
            bar=1.25,
            better="lower",
            unit="x",
            description="demo lifecycle as a Prefect flow (server up) / the same stage functions called directly",
            samples=overhead,
            profile=_profile_flow,
        ),
        Metric(
            name="resume_after_last_stage_ratio",
            bar=0.35,
            better="lower",
            unit="x",
            description="resume of a flow run that failed at promote / a full flow run",
            samples=resume,
            profile=_profile_resume,
        ),
    ]
