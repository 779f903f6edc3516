"""What every benchmark group shares: the scratch directory, metrics, timing and the demo setup."""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.profiling import Profiler
from sandbox.config import FleetConfig, load_config
from sandbox.context import SandboxContext
from sandbox.demo import demo_request, prepare_demo
from sandbox.inventory import Inventory
from sandbox.lifecycle_request import LifecycleRequest
from sandbox.models import Stage
from sandbox.stages import STAGE_FUNCTIONS
from sandbox.stages.register import register, validate_request
from sandbox.wiring import build_drivers, open_inventory

#: The ``bench/`` directory.
BENCH_DIR = Path(__file__).resolve().parent
#: Scratch space (git-ignored); every group works in its own subdirectory.
WORK_DIR = BENCH_DIR / ".work"

#: Runs one more iteration of a metric with only its measured part under the profiler.
ProfileRun = Callable[[Profiler], None]


class BenchError(RuntimeError):
    """A benchmark could not measure what it claims to (its setup went wrong)."""


@dataclass
class Metric:
    """One figure of ``results.json`` with its bar.

    Attributes:
        name: The key in ``results.json``.
        bar: The limit the value (the samples' median) must meet.
        better: ``lower`` (value <= bar) or ``higher`` (value >= bar).
        unit: For the README's table.
        description: What was measured, for the README's table.
        samples: Each repetition's figure.
        profile: Runs one more iteration under a profiler (the README reports
            what dominated the metric closest to its bar).
        note: Shown under the README's table.
        peers: The outside programs measured beside the project for this metric, name -> version
            (``results.json`` and the README list them).
    """

    name: str
    bar: float
    better: Literal["lower", "higher"]
    unit: str
    description: str
    samples: list[float]
    profile: ProfileRun | None = None
    note: str = ""
    peers: dict[str, str] = field(default_factory=dict)

    @property
    def value(self) -> float:
        """The median over the repetitions."""
        return median(self.samples)

    @property
    def passed(self) -> bool:
        """Whether the value meets its bar."""
        return self.value <= self.bar if self.better == "lower" else self.value >= self.bar

    @property
    def bar_used(self) -> float:
        """How much of the bar the value uses (1.0 is exactly at the bar; above 1.0 fails)."""
        if self.better == "lower":
            return self.value / self.bar if self.bar else float("inf")
        return self.bar / self.value if self.value else float("inf")


def median(values: Sequence[float]) -> float:
    """The median of the repetitions."""
    if not values:
        raise BenchError("no repetition produced a figure")
    return float(statistics.median(values))


def elapsed(action: Callable[[], Any]) -> float:
    """Seconds ``action`` takes (monotonic, high-resolution clock)."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


_SEQUENCE = itertools.count(1)


def new_workdir(group_dir: Path, label: str) -> Path:
    """A directory path under ``group_dir`` not used before in this process.

    Never reuse a path for a new demo setup within one process: the inventory
    remembers per database URL that it has brought the schema up to date, so a
    database deleted and recreated at the same path would be left unmigrated.
    """
    return group_dir / f"{label}-{next(_SEQUENCE)}"


def fresh_dir(path: Path) -> Path:
    """``path`` emptied (created when missing)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def discard(path: Path) -> None:
    """Remove a finished setup, as far as possible now.

    A watch of the simulated cluster can go on polling for a while after the
    wait that started it returned (``sandbox.flux._Watcher`` notices the end of
    the wait only at its next event), so a directory may still be written
    while it is removed; what is left goes with the group's next run.
    """
    shutil.rmtree(path, ignore_errors=True)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    return {
        "cpu count": str(os.cpu_count() or "unknown"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a",
    }


def log(message: str) -> None:
    """Progress on stderr (stdout stays free for the summary)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- the demo, run with the stage functions directly -----------------------------


def prepare_bench_demo(workdir: Path) -> Path:
    """A fresh demo setup (example fleet repo, bare remote, fleet.yaml) in ``workdir``; its fleet.yaml."""
    fresh_dir(workdir)
    return prepare_demo(workdir)


def bench_request(config_path: Path) -> LifecycleRequest:
    """The demo's lifecycle request; what was created is kept if a stage fails, so it can be resumed."""
    return demo_request(config_path).model_copy(update={"keep_on_failure": True})


def stage_kwargs(stage: Stage, request: LifecycleRequest) -> dict[str, Any]:
    """The keyword arguments the stage's task passes (tasks/<stage>.py); the Prefect-only ones left out."""
    if stage is Stage.clone:
        return {"change": request.change}
    if stage is Stage.teardown:
        return {"force": False}
    return {}


class DirectLifecycle:
    """A lifecycle (the demo's by default) through the stage functions of ``sandbox.stages``, without Prefect.

    The drivers are the ones the tasks build (``build_drivers``), and each stage's
    completion is recorded in the inventory as ``tasks/common.run_stage`` does,
    because later stages read earlier results from it (promote needs validate's).
    """

    def __init__(self, config_path: Path, request: LifecycleRequest | None = None) -> None:
        self.config: FleetConfig = load_config(config_path)
        self.request = request or bench_request(config_path)
        self.inventory: Inventory = open_inventory(self.config)
        record = register(self.config, self.inventory, validate_request(self.config, self.request), resume=False)
        self.ctx = SandboxContext(
            config=self.config, inventory=self.inventory, drivers=build_drivers(self.config), record=record
        )

    def run(self, stages: Sequence[Stage]) -> None:
        """Run ``stages`` in order."""
        record = self.ctx.record
        for stage in stages:
            self.ctx.refresh()
            with self.inventory.recording_stage(record.name, record.lifecycle_id, stage) as recording:
                recording.complete(STAGE_FUNCTIONS[stage](self.ctx, **stage_kwargs(stage, self.request)))
        self.ctx.refresh()

    def close(self) -> None:
        """Release the inventory's connections."""
        self.inventory.close()
