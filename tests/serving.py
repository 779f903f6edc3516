"""Real Prefect servers in the integration tests: ``make serve`` as a process, and what the server logged.

:func:`serve_deployments` runs ``python -m deployments.serve`` as ``make serve``
does (a real ``prefect server start`` with its services, every deployment of
``prefect.yaml`` served) on a free port, with its home in a test directory, on
SQLite or on a PostgreSQL database. The server's output goes to
``<home>/server.log`` (``deployments.serve.local_server`` writes it there).

:func:`service_errors` reads a server log for what says a server service failed:
a Python traceback anywhere, or an ERROR (or CRITICAL) record of Prefect's server
(``prefect.server...``) or of docket, which runs Prefect's services and logs
their exceptions (``docket.dependencies``: the scheduler's failures with
SQLAlchemy 2.1 were only there). Such a service fails every loop in the server
while the API keeps answering, so a test that only talks to the API does not see
it. :func:`assert_no_service_errors` fails a test with the first of them; every
test that starts a real server calls it on that server's log after stopping it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.pg_server import free_port

#: A record of the server's log: ``04:10:21.373 | ERROR   | docket.dependencies - ...``.
_RECORD = re.compile(r"^\S+ \| [A-Z]+ *\| ")
#: A record at ERROR or worse from Prefect's server or from docket.
_SERVICE_ERROR = re.compile(r"^\S+ \| (ERROR|CRITICAL) *\| (prefect\.server|docket)[\w.]* - ")
_TRACEBACK = "Traceback (most recent call last):"
#: Lines of a long finding kept for the failure message: its first ones and its last
#: ones (a traceback's last line names the exception).
_HEAD_LINES, _TAIL_LINES = 4, 30


def service_errors(log_path: Path) -> list[str]:
    """Each traceback or service ERROR record in a server log, with the lines after it (empty: none).

    A finding runs to the next record of the log: an ERROR record and the
    traceback logged with it (chained exceptions included) are one finding.
    """
    if not log_path.exists():
        return []
    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    found: list[str] = []
    number = 0
    while number < len(lines):
        if _TRACEBACK not in lines[number] and not _SERVICE_ERROR.match(lines[number]):
            number += 1
            continue
        end = number + 1
        while end < len(lines) and not _RECORD.match(lines[end]):
            end += 1
        finding = lines[number:end]
        if len(finding) > _HEAD_LINES + _TAIL_LINES:
            finding = [*finding[:_HEAD_LINES], "    ...", *finding[-_TAIL_LINES:]]
        found.append("\n".join(finding))
        number = end
    return found


def assert_no_service_errors(log_path: Path) -> None:
    """Fail naming the server log and quoting its first service error, if it has any."""
    errors = service_errors(log_path)
    if errors:
        pytest.fail(
            f"{len(errors)} traceback(s) or service error(s) in the Prefect server log {log_path}; the first:\n"
            f"{errors[0]}",
            pytrace=False,
        )


@dataclass(frozen=True)
class Served:
    """A running ``python -m deployments.serve``."""

    url: str
    """The UI's address (the API is at ``<url>/api``)."""
    log_path: Path
    """The output of ``deployments.serve`` itself (the runner and the runs it starts)."""
    server_log: Path
    """The output of the Prefect server it started."""

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


@contextlib.contextmanager
def serve_deployments(
    workdir: Path,
    config_path: Path | None = None,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """``python -m deployments.serve`` on a free port, its home in ``workdir``; stopped on exit.

    Args:
        workdir: Where the server's home and the logs go.
        config_path: The fleet's fleet.yaml (``--config``); none: served without a fleet.
        database_url: The server's database (``--database-url``); none: SQLite in the home.
        env: Variables added to the environment of serve and the server it starts
            (``PREFECT_SERVER_...`` settings reach the server).

    On a clean exit of the ``with`` body, the server's log is checked with
    :func:`assert_no_service_errors` once everything has stopped.
    """
    port = free_port()
    home = workdir / "home"
    log_path = workdir / "serve.log"
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"}
    }
    environment.update(env or {})
    argv = [sys.executable, "-m", "deployments.serve", "--port", str(port), "--home", str(home)]
    if config_path is not None:
        argv += ["--config", str(config_path)]
    if database_url is not None:
        argv += ["--database-url", database_url]
    workdir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            argv, env=environment, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    served = Served(f"http://127.0.0.1:{port}", log_path, home / "server.log")
    try:
        yield served
    finally:
        process.send_signal(signal.SIGTERM)  # serve pauses its schedules and stops the server it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            pytest.fail("deployments.serve did not stop on SIGTERM")
    assert_no_service_errors(served.server_log)
