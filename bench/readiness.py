"""How soon the validate stage's wait notices that the simulated cluster converged.

``readiness_detection_latency_ms``: from the moment the last Kustomization or
HelmRelease turned Ready in the simulated cluster to the moment
``sandbox.flux.wait_ready`` (what the validate stage waits with) returns.

The simulated controllers decide readiness lazily, on the next call that lets
them act, but the moment an object *turned* Ready is recorded: a Flux object is
Ready ``readiness_delay_seconds`` after its generation last changed or it last
started progressing (``settled`` in ``sandbox/drivers/simulation/reconciling.py``).
The latest such moment over the objects the wait watches is the convergence
time; the wait's return, read on the same clock, is the detection time.

The cluster is the demo's, provisioned, cloned and bootstrapped with the stage
functions, with the demo's readiness delay.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.common import (
    WORK_DIR,
    BenchError,
    DirectLifecycle,
    Metric,
    discard,
    fresh_dir,
    log,
    new_workdir,
    prepare_bench_demo,
)
from bench.profiling import Profiler
from sandbox.drivers.simulated_cluster import SimulatedCluster
from sandbox.drivers.simulation.apiserver import STATE_FILE, locked_state
from sandbox.flux import FLUX_APPLIERS, wait_ready
from sandbox.models import Stage

#: Repetitions (the figure is the median).
REPETITIONS = 7
#: Where this group works.
GROUP_DIR = WORK_DIR / "readiness"

_WATCHED = {(api_version.split("/", 1)[0], kind) for api_version, kind in FLUX_APPLIERS}


def converged_at(cluster: SimulatedCluster, readiness_delay: float) -> float:
    """When the last watched Flux object turned Ready (seconds since the epoch), from the simulation's records."""
    with locked_state(cluster.simulation_dir):
        state = json.loads((cluster.simulation_dir / STATE_FILE).read_text(encoding="utf-8"))
    moments = []
    for obj in state["objects"].values():
        if (str(obj["apiVersion"]).split("/", 1)[0], obj["kind"]) not in _WATCHED:
            continue
        record = state["internal"].get(obj["metadata"]["uid"], {})
        # As the simulated controllers decide it (controllers._settled).
        since = max(float(record.get("generationChangedAt", 0.0)), float(record.get("progressSince", 0.0)))
        moments.append(since + readiness_delay)
    if not moments:
        raise BenchError("the simulated cluster has no Kustomization or HelmRelease")
    return max(moments)


def measure_once(workdir: Path) -> float:
    """Milliseconds from convergence to ``wait_ready`` returning, on a freshly bootstrapped demo sandbox."""
    lifecycle = DirectLifecycle(prepare_bench_demo(workdir))
    try:
        lifecycle.run([Stage.provision, Stage.clone, Stage.bootstrap])
        cluster = lifecycle.ctx.cluster()
        if not isinstance(cluster, SimulatedCluster):
            raise BenchError("the demo's cluster is not the simulated one")
        settings = lifecycle.config.drivers.cluster
        wait_ready(cluster, settings.ready_timeout_seconds)
        noticed = time.time()  # the simulated cluster's clock
        converged = converged_at(cluster, settings.simulation.readiness_delay_seconds)
    finally:
        lifecycle.close()
    if converged > noticed:
        raise BenchError("the last object turned Ready after the wait returned (the records do not add up)")
    return (noticed - converged) * 1000


def _profile(profiler: Profiler) -> None:
    # The watch threads do the polling; this profiles the waiting thread (the
    # seeding list and each re-evaluation of the condition).
    lifecycle = DirectLifecycle(prepare_bench_demo(new_workdir(GROUP_DIR, "profile")))
    try:
        lifecycle.run([Stage.provision, Stage.clone, Stage.bootstrap])
        cluster = lifecycle.ctx.cluster()
        profiler.call(lambda: wait_ready(cluster, lifecycle.config.drivers.cluster.ready_timeout_seconds))
    finally:
        lifecycle.close()


def run(repetitions: int = REPETITIONS) -> list[Metric]:
    """The metric."""
    fresh_dir(GROUP_DIR)
    samples = []
    for index in range(repetitions):
        workdir = new_workdir(GROUP_DIR, "run")
        samples.append(measure_once(workdir))
        discard(workdir)
        log(f"readiness {index + 1}/{repetitions}: noticed {samples[-1]:.0f} ms after the last object turned Ready")
    return [
        Metric(
            name="readiness_detection_latency_ms",
            bar=1000,
            better="lower",
            unit="ms",
            description="last Flux object Ready in the simulated cluster -> validate's wait_ready returns",
            samples=samples,
            profile=_profile,
        )
    ]
