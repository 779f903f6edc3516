"""Nightly cleanup scaling: ``cleanup_100_vs_10_ratio``.

The ``cleanup-expired-sandboxes`` flow (server already up) over 100 expired
sandboxes, divided by the same flow over 10, both with ``cleanup.concurrency``
10. Creating 100 sandboxes takes minutes, so the large fleet is cleaned once and
the small one :data:`SMALL_RUNS` times around it; each small run gives a ratio
and the median is kept. Linear scaling is 10; fixed costs (the flow run, the
plan, the report) pull it below, anything that grows faster than the number of
sandboxes (the plan's scans, the bounded-concurrency loop, inventory
contention) pushes it above.

Each sandbox is a real one of the demo fleet on the simulated cluster:
provisioned, cloned and bootstrapped with the stage functions (so its cluster
runs Flux, its controllers and their custom objects), then its expiry set in the
past. The flow must tear down every one of them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

import yaml

from bench.common import (
    WORK_DIR,
    BenchError,
    DirectLifecycle,
    Metric,
    discard,
    elapsed,
    fresh_dir,
    log,
    median,
    new_workdir,
    prepare_bench_demo,
)
from bench.profiling import Profiler
from sandbox.inventory import utcnow
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import Stage

#: The two fleet sizes compared.
SMALL, LARGE = 10, 100
#: ``cleanup.concurrency`` for both.
CONCURRENCY = 10
#: Runs over a small fleet (the large one runs once, in their middle: creating
#: 100 sandboxes is most of this group's time). Each small run gives one ratio.
SMALL_RUNS = 4
#: Sandboxes created at once while setting up a fleet (not measured).
SETUP_WORKERS = 4
#: Where this group works.
GROUP_DIR = WORK_DIR / "cleanup"


def prepare_fleet(workdir: Path, count: int) -> Path:
    """A demo fleet with ``count`` bootstrapped sandboxes, all expired; its fleet.yaml."""
    config_path = prepare_bench_demo(workdir)
    document = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    document.setdefault("cleanup", {})["concurrency"] = CONCURRENCY
    config_path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    expired = utcnow() - timedelta(hours=1)

    def create(index: int) -> None:
        request = LifecycleRequest(
            config_path=str(config_path),
            name=f"expired-{index:03d}",
            source_env="development",
            ticket=f"OPS-{100 + index}",
            summary="cleanup bench",
            keep_on_failure=True,
        )
        lifecycle = DirectLifecycle(config_path, request)
        try:
            lifecycle.run([Stage.provision, Stage.clone, Stage.bootstrap])
            lifecycle.inventory.update(request.name, expires_at=expired)
        finally:
            lifecycle.close()

    # Sandboxes are independent (own checkout, terraform and cluster directories);
    # creating a few at once only shortens the setup, which is not measured.
    with ThreadPoolExecutor(max_workers=SETUP_WORKERS) as pool:
        for future in [pool.submit(create, index) for index in range(count)]:
            future.result()
    return config_path


def run_cleanup(config_path: Path, expected: int) -> None:
    """The cleanup flow; every expired sandbox must be torn down."""
    from cli.common import call_flow
    from flows.cleanup import cleanup_expired_sandboxes

    state = call_flow(cleanup_expired_sandboxes, config_path=str(config_path))
    if not state.is_completed():
        raise BenchError(f"cleanup flow run ended {state.name}: {state.result(raise_on_failure=False)}")
    report = state.result()
    if report.count("done") != expected or len(report.outcomes) != expected:
        raise BenchError(
            f"cleanup handled {len(report.outcomes)} target(s), done {report.count('done')}; expected {expected}"
        )


@dataclass
class _Run:
    """One timed cleanup run: wall-clock seconds and the CPU seconds it used (this process, its children, server)."""

    count: int
    seconds: float
    cpu: float


def _cpu_seconds(server_pid: int | None) -> float:
    """CPU seconds used so far by this process, its reaped children and the Prefect server."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    if server_pid is not None:
        try:
            fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass  # no /proc: the server's share is left out of both sides alike
    return total


def _timed(config_path: Path, count: int, server_pid: int | None) -> _Run:
    cpu = _cpu_seconds(server_pid)
    seconds = elapsed(partial(run_cleanup, config_path, count))
    return _Run(count, seconds, _cpu_seconds(server_pid) - cpu)


def _profile(profiler: Profiler) -> None:
    config_path = prepare_fleet(new_workdir(GROUP_DIR, "profile"), SMALL)
    profiler.call(partial(run_cleanup, config_path, SMALL))


def run(repetitions: int = SMALL_RUNS, server_pid: int | None = None) -> list[Metric]:
    """The metric; needs :func:`bench.lifecycle.prefect_server` around it.

    Every fleet is created first; then the cleanups run back to back, the large
    one in the middle of the small ones, so they share the machine's load as
    far as runs of 5 and 50 seconds can.

    Args:
        repetitions: Runs over a small fleet.
        server_pid: The Prefect server's process, to count its CPU time.
    """
    fresh_dir(GROUP_DIR)
    log(f"cleanup: creating {repetitions} fleets of {SMALL} and one of {LARGE} expired sandboxes")
    small_fleets = [prepare_fleet(new_workdir(GROUP_DIR, f"fleet{SMALL}"), SMALL) for _ in range(repetitions)]
    large_fleet = prepare_fleet(new_workdir(GROUP_DIR, f"fleet{LARGE}"), LARGE)
    middle = (repetitions + 1) // 2
    runs = [_timed(path, SMALL, server_pid) for path in small_fleets[:middle]]
    large = _timed(large_fleet, LARGE, server_pid)
    runs += [_timed(path, SMALL, server_pid) for path in small_fleets[middle:]]
    for path in [*small_fleets, large_fleet]:
        discard(path.parent)
    ratios = [large.seconds / small.seconds for small in runs]
    cpu_ratio = large.cpu / median([small.cpu for small in runs])
    log(
        f"cleanup: {LARGE} sandboxes in {large.seconds:.1f}s ({large.cpu:.1f} CPU-s); {SMALL} in "
        + ", ".join(f"{small.seconds:.1f}s ({small.cpu:.1f} CPU-s)" for small in runs)
        + f" -> {', '.join(f'{r:.2f}' for r in ratios)}; CPU-time ratio {cpu_ratio:.2f}"
    )
    return [
        Metric(
            name="cleanup_100_vs_10_ratio",
            bar=11,
            better="lower",
            unit="x",
            description=(
                f"cleanup flow over {LARGE} expired sandboxes (one run) / over {SMALL} (each of {len(runs)} runs), "
                f"concurrency {CONCURRENCY}"
            ),
            samples=ratios,
            profile=_profile,
            note=(
                f"CPU time (this process, its subprocesses, the Prefect server) of the {LARGE}-sandbox run / "
                f"the {SMALL}-sandbox runs' median: {cpu_ratio:.2f}. The wall-clock ratio also depends on how "
                "much of the machine other processes leave during a 5 s and a 50 s run."
            ),
        )
    ]
