"""Profiling one more iteration of a metric: cProfile on the calling thread, sampling on every thread.

cProfile sees only the thread that enabled it, while the flows' work runs in
task threads, watch threads and subprocesses. So, alongside it, a sampler
looks at every thread's stack every few milliseconds and counts where each
one running the project's code was: its innermost project frame and the frame
it was executing (a lock, a subprocess wait, SQLite, a JSON dump...). A thread
waiting for the GIL is counted where it waits, so on a busy machine the table
shows where threads *are*, which is where the wall-clock time goes.
"""

from __future__ import annotations

import cProfile
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_PROJECT_PACKAGES = ("sandbox", "tasks", "flows", "cli", "bench")


def _frame_name(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    parts = path.parts
    if "site-packages" in parts:
        shown = "/".join(parts[parts.index("site-packages") + 1 :])
    else:
        try:
            shown = str(path.relative_to(PROJECT_ROOT))
        except ValueError:
            shown = path.name
    return f"{shown}:{frame.lineno} {frame.name}"


def _is_project(frame: traceback.FrameSummary) -> bool:
    try:
        relative = Path(frame.filename).relative_to(PROJECT_ROOT)
    except ValueError:
        return False
    return relative.parts[0] in _PROJECT_PACKAGES and relative.parts[0] != "bench"


class ThreadSampler:
    """Counts, every ``interval`` seconds, where each thread of the process is."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples = 0
        self.where: Counter[tuple[str, str]] = Counter()
        self.other = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack = traceback.extract_stack(frame)
                project = [f for f in stack if _is_project(f)]
                if project:
                    self.where[(_frame_name(project[-1]), _frame_name(stack[-1]))] += 1
                else:  # Prefect's workers, event loop and heartbeat, idle pool threads
                    self.other += 1

    def table(self, top: int = 15) -> str:
        """Markdown: the most frequent places, as the average number of threads found there."""
        lines = [
            "| innermost project frame | executing | threads (avg) |",
            "|---|---|---:|",
        ]
        samples = max(self.samples, 1)
        for (project, leaf), count in self.where.most_common(top):
            lines.append(f"| `{project}` | `{leaf}` | {count / samples:.2f} |")
        lines.append(f"| (threads outside the project's code: Prefect, idle pools) | | {self.other / samples:.2f} |")
        return "\n".join(lines)


class Profiler:
    """cProfile on the calling thread plus a :class:`ThreadSampler` over all threads."""

    def __init__(self) -> None:
        self.profile = cProfile.Profile()
        self.sampler = ThreadSampler()
        self.seconds = 0.0
        self._started = 0.0

    def enable(self) -> None:
        """Start both."""
        self.sampler.start()
        self._started = time.perf_counter()
        self.profile.enable()

    def disable(self) -> None:
        """Stop both."""
        self.profile.disable()
        self.seconds += time.perf_counter() - self._started
        self.sampler.stop()

    def call(self, run: Callable[[], object]) -> None:
        """Profile one call of ``run`` (the profiler stops even when it raises)."""
        self.enable()
        try:
            run()
        finally:
            self.disable()
