"""The locust load generator: locust, headless, as a subprocess.

A run is prepared first and run second, as ansible-runner separates its
private data directory from the process it starts:

1. :func:`prepare_locust_run` writes the run's files into a working directory
   (the locustfile, unless the scenario brings its own, and a small plugin that
   writes the final statistics) and builds the :class:`~sandbox.proc.Command`;
   nothing runs yet, so tests can check exactly what would be started.
2. :func:`run_locust` starts it through :func:`sandbox.proc.run` and parses the
   statistics with :func:`parse_locust_stats`.

Why the plugin: locust's ``--csv`` writer refreshes ``<prefix>_stats.csv`` once
a second from a background greenlet and does not refresh it when the run ends,
so the file can miss the last second of a short run. The plugin writes the same
CSV (locust's own :class:`locust.stats.StatsCSV`, same columns) from the
``quit`` event, after the runner stopped, to ``<prefix>_final_stats.csv``;
the parser prefers that file and falls back to ``<prefix>_stats.csv``.

Locust's percentiles are approximations: it keeps response times below 100 ms
to the millisecond and longer ones to two significant digits.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.drivers.load import LoadMetrics
from sandbox.errors import CommandFailedError, InvalidInputError
from sandbox.proc import Command, run, tail

#: The locustfile written when a scenario does not bring its own.
LOCUSTFILE_NAME = "fleet_sandbox_locustfile.py"
#: The plugin that writes the final statistics.
STATS_PLUGIN_NAME = "fleet_sandbox_final_stats.py"
#: Environment variable naming the final statistics file (read by the plugin).
FINAL_STATS_ENV = "FLEET_SANDBOX_LOCUST_FINAL_STATS"
#: Environment variable with the path (and query) every user requests (read by the locustfile).
TARGET_PATH_ENV = "FLEET_SANDBOX_LOAD_PATH"
#: Prefix of locust's CSV files inside the working directory.
CSV_PREFIX = "locust"

DEFAULT_LOCUSTFILE = f'''"""fleet-sandbox's default scenario: every user GETs one path, back to back."""

import os

from locust import HttpUser, constant, task


class TargetUser(HttpUser):
    wait_time = constant(0)

    @task
    def get_target(self) -> None:
        path = os.environ.get("{TARGET_PATH_ENV}", "/")
        self.client.get(path, name="GET " + path)
'''

STATS_PLUGIN = f'''"""Writes locust's request statistics once the run has ended (see fleet-sandbox's locust driver)."""

import csv
import os

from locust import events
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

_environments = []


@events.init.add_listener
def _remember(environment, **_kwargs):
    _environments.append(environment)


@events.quit.add_listener
def _write_final_stats(**_kwargs):
    path = os.environ.get("{FINAL_STATS_ENV}")
    if not path or not _environments:
        return
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as stream:
        StatsCSV(_environments[0], PERCENTILES_TO_REPORT).requests_csv(csv.writer(stream))
    os.replace(path + ".tmp", path)
'''


def default_locust_command() -> tuple[str, ...]:
    """``python -m locust`` with this interpreter (locust is a dependency of the product)."""
    return (sys.executable, "-m", "locust")


@dataclass(frozen=True)
class LocustRun:
    """A prepared locust run: its files are written, its command is built, nothing runs yet.

    Attributes:
        workdir: The run's working directory (locustfile, plugin, CSV files).
        command: The command that runs locust.
        stats_csv: Where locust's own ``--csv`` writer keeps the request statistics.
        final_stats_csv: Where the plugin writes the statistics once the run ended.
    """

    workdir: Path
    command: Command
    stats_csv: Path
    final_stats_csv: Path


def run_time_argument(duration_seconds: float) -> str:
    """Locust's ``--run-time`` for a duration: whole seconds, rounded up, at least one."""
    return f"{max(1, math.ceil(duration_seconds))}s"


def prepare_locust_run(
    workdir: Path,
    *,
    target_url: str,
    users: int,
    duration_seconds: float,
    spawn_rate: float | None = None,
    locust_command: Sequence[str] | None = None,
    locustfile: Path | None = None,
    startup_timeout_seconds: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> LocustRun:
    """Write a run's files into ``workdir`` and build its command.

    Args:
        workdir: The run's directory (created; earlier CSV files in it are removed).
        target_url: ``http(s)://host[:port]/path``: the host becomes ``--host``,
            the path (and query) what the default locustfile requests.
        users: Concurrent users (``-u``).
        duration_seconds: Run time (``-t``, whole seconds rounded up).
        spawn_rate: Users started per second (``-r``); all users within a second when ``None``.
        locust_command: How to start locust; default ``python -m locust``.
        locustfile: The scenario's own locustfile instead of the default one.
        startup_timeout_seconds: Time allowed on top of the run time before the
            process is killed.
        env: Extra environment variables for the locust process.

    Raises:
        InvalidInputError: Bad URL, users, duration, spawn rate, or a missing locustfile.
    """
    parts = urlsplit(target_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"load target {target_url!r} is not an http(s) URL")
    if users < 1 or duration_seconds <= 0:
        raise InvalidInputError("load needs at least one user and a positive duration")
    if spawn_rate is not None and spawn_rate <= 0:
        raise InvalidInputError("the spawn rate must be positive")
    if locustfile is not None and not locustfile.is_file():
        raise InvalidInputError(f"locustfile {locustfile} does not exist")
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in workdir.glob(f"{CSV_PREFIX}_*.csv"):
        stale.unlink()
    plugin = workdir / STATS_PLUGIN_NAME
    plugin.write_text(STATS_PLUGIN, encoding="utf-8")
    if locustfile is None:
        locustfile = workdir / LOCUSTFILE_NAME
        locustfile.write_text(DEFAULT_LOCUSTFILE, encoding="utf-8")
    host = f"{parts.scheme}://{parts.netloc}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    final_stats = workdir / f"{CSV_PREFIX}_final_stats.csv"
    argv = (
        *(locust_command or default_locust_command()),
        "--locustfile",
        f"{plugin},{locustfile.resolve()}",
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        f"{spawn_rate if spawn_rate is not None else users:g}",
        "--run-time",
        run_time_argument(duration_seconds),
        "--host",
        host,
        "--csv",
        str(workdir / CSV_PREFIX),
        "--only-summary",
        "--loglevel",
        "WARNING",
        # Failed requests are measurements (the error rate), not a failed run.
        "--exit-code-on-error",
        "0",
    )
    command = Command(
        argv=argv,
        cwd=workdir,
        timeout=math.ceil(duration_seconds) + startup_timeout_seconds,
        env={**(env or {}), TARGET_PATH_ENV: path, FINAL_STATS_ENV: str(final_stats)},
        redact=tuple(secret for secret in (parts.password,) if secret),
    )
    return LocustRun(
        workdir=workdir,
        command=command,
        stats_csv=workdir / f"{CSV_PREFIX}_stats.csv",
        final_stats_csv=final_stats,
    )


def _number(row: Mapping[str, str], column: str, source: str) -> float:
    value = (row.get(column) or "").strip()
    if value in ("", "N/A"):
        return 0.0
    try:
        return float(value)
    except ValueError:
        raise CommandFailedError(f"{source}: column {column!r} is not a number ({value!r})") from None


def parse_locust_stats(
    text: str, *, source: str = "locust stats", duration_seconds: float | None = None
) -> LoadMetrics:
    """Metrics from locust's request statistics CSV (its ``Aggregated`` row).

    Args:
        text: The CSV (``Type,Name,Request Count,Failure Count,...,Requests/s,...,50%,...,95%,...,99%,...``).
        source: Names the file in errors.
        duration_seconds: Used when no request was made (throughput 0).

    Raises:
        CommandFailedError: The CSV has no ``Aggregated`` row or lacks a column.
    """
    reader = csv.DictReader(io.StringIO(text))
    required = ("Request Count", "Failure Count", "Requests/s", "50%", "95%", "99%")
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise CommandFailedError(f"{source}: not locust request statistics (missing {', '.join(missing)})")
    aggregated = [row for row in reader if (row.get("Name") or "").strip() == "Aggregated"]
    if not aggregated:
        raise CommandFailedError(f"{source}: no 'Aggregated' row")
    row = aggregated[-1]
    requests = int(_number(row, "Request Count", source))
    failures = int(_number(row, "Failure Count", source))
    rps = _number(row, "Requests/s", source)
    duration = requests / rps if rps > 0 else float(duration_seconds or 0.0)
    return LoadMetrics(
        requests=requests,
        failures=failures,
        duration_seconds=round(duration, 3),
        requests_per_second=round(rps, 2),
        p50_ms=_number(row, "50%", source),
        p95_ms=_number(row, "95%", source),
        p99_ms=_number(row, "99%", source),
    )


def run_locust(prepared: LocustRun, *, duration_seconds: float | None = None) -> LoadMetrics:
    """Run a prepared locust run and parse its statistics.

    Raises:
        ToolNotFoundError: locust is not installed.
        CommandTransientError: locust did not finish in time (retryable).
        CommandFailedError: locust failed (bad locustfile, ...) or wrote no statistics.
    """
    # A load run killed at its timeout may run again: it changes nothing but its own
    # statistics files.
    done = run(prepared.command, check=False, timeout_is_retryable=True)
    if done.returncode != 0:
        detail = tail(done.stderr or done.stdout)
        raise CommandFailedError(
            f"locust failed (exit {done.returncode}): {detail}", returncode=done.returncode, stderr_tail=detail
        )
    for path in (prepared.final_stats_csv, prepared.stats_csv):
        if path.is_file():
            return parse_locust_stats(
                path.read_text(encoding="utf-8"), source=path.name, duration_seconds=duration_seconds
            )
    raise CommandFailedError(f"locust wrote no statistics in {prepared.workdir}: {tail(done.stderr or done.stdout)}")


class LocustLoadGenerator:
    """A :class:`~sandbox.drivers.load.LoadGenerator` that runs locust headless.

    Args:
        locust_command: How to start locust (default ``python -m locust``).
        locustfile: A scenario's own locustfile (default: every user GETs the target URL).
        workdir: Keep each run's files (CSV statistics included) here; a
            temporary directory, removed afterwards, when ``None``.
        startup_timeout_seconds: Time allowed on top of the run time.
    """

    def __init__(
        self,
        locust_command: Sequence[str] | None = None,
        locustfile: Path | None = None,
        workdir: Path | None = None,
        startup_timeout_seconds: float = 60.0,
    ) -> None:
        self.locust_command = tuple(locust_command) if locust_command else default_locust_command()
        self.locustfile = locustfile
        self.workdir = workdir
        self.startup_timeout_seconds = startup_timeout_seconds

    @contextmanager
    def _directory(self) -> Iterator[Path]:
        if self.workdir is not None:
            yield self.workdir
            return
        scratch = Path(tempfile.mkdtemp(prefix="fleet-sandbox-locust-"))
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def prepare(
        self, target_url: str, *, users: int, duration_seconds: float, spawn_rate: float | None, workdir: Path
    ) -> LocustRun:
        """Write the run's files into ``workdir`` and build its command (nothing runs)."""
        return prepare_locust_run(
            workdir,
            target_url=target_url,
            users=users,
            duration_seconds=duration_seconds,
            spawn_rate=spawn_rate,
            locust_command=self.locust_command,
            locustfile=self.locustfile,
            startup_timeout_seconds=self.startup_timeout_seconds,
        )

    def run(
        self, target_url: str, *, users: int, duration_seconds: float, spawn_rate: float | None = None
    ) -> LoadMetrics:
        """Run locust against ``target_url`` and return what it measured."""
        with self._directory() as workdir:
            prepared = self.prepare(
                target_url, users=users, duration_seconds=duration_seconds, spawn_rate=spawn_rate, workdir=workdir
            )
            return run_locust(prepared, duration_seconds=duration_seconds)
