"""Prefect settings the CLI decides before Prefect is imported.

Prefect reads its settings from the environment when it is first imported, so
the CLI sets defaults (never overriding what the user set) and imports the
flows lazily afterwards.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from sandbox.errors import SandboxError

#: Seconds the CLI lets Prefect's temporary server take to start (Prefect's default: 20).
EPHEMERAL_STARTUP_TIMEOUT_SECONDS = 120


def configure_prefect(state_dir: Path) -> None:
    """Persist task results next to the sandbox state unless configured otherwise.

    Checkpoints must survive the process so a rerun can resume; the user's own
    ``PREFECT_RESULTS_LOCAL_STORAGE_PATH`` (or a storage block) wins.
    """
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(state_dir / "prefect-results"))
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
    # The CLI prints its own summary; keep Prefect's console logs to the point.
    os.environ.setdefault("PREFECT_LOGGING_LOG_PRINTS", "true")
    # Without PREFECT_API_URL every CLI process starts its own temporary server on the
    # shared database: keep the sandbox locks' leases on disk too (in PREFECT_HOME), so
    # one process can release the lease of another that was killed while holding it.
    os.environ.setdefault(
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect.server.concurrency.lease_storage.filesystem"
    )
    # The temporary server a CLI run starts would otherwise run Prefect's telemetry
    # job, which races the run's own writes to the server's SQLite database and
    # prints a "database is locked" traceback on shutdown.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives the temporary server 20 s to answer; on a loaded machine (a CI
    # runner, a laptop building something) its start takes longer, and the command
    # failed with "Timed out while attempting to connect to ephemeral Prefect API server".
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT_SECONDS))


class _DropExpectedTracebacks(logging.Filter):
    """Keep the one-line cause of an expected failure, drop its traceback, on the console.

    Prefect's engines log failed runs with ``exc_info``; for this product's own
    errors (invalid input, a held lock, pending finalizers) the message already
    says everything, and users must never see a traceback. The server-side log
    handler keeps the full record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # An interrupt (Ctrl-C) is expected too: the CLI says "interrupted" and exits 130.
        if record.exc_info and isinstance(record.exc_info[1], SandboxError | KeyboardInterrupt):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_expected_tracebacks() -> None:
    """Install the filter on Prefect's console handlers (call after Prefect is imported)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [
        logging.getLogger(),
        *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("prefect")),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler | logging.StreamHandler) and not any(
                isinstance(f, _DropExpectedTracebacks) for f in handler.filters
            ):
                handler.addFilter(_DropExpectedTracebacks())


#: The variables with which a user chooses flow-run heartbeats for themselves.
HEARTBEAT_VARIABLES = ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY")


@contextmanager
def in_process_run() -> Iterator[None]:
    """Prefect settings for a flow run the CLI runs in its own process (wrap the flow call).

    Flow-run heartbeats are off unless the user set one of
    :data:`HEARTBEAT_VARIABLES`. They exist to feed an automation that marks runs
    of a vanished worker Crashed; a run in an engineer's terminal or a CI job has
    the sandbox lock's dead-holder takeover and ``sandbox resume`` instead, and
    Prefect 3.8's heartbeat thread sleeps in 1 s steps that the engine joins,
    adding up to a second to every run. Deployments on workers keep Prefect's
    default (see docs/operations.md).
    """
    if any(name in os.environ for name in HEARTBEAT_VARIABLES):
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def detach_temporary_server() -> None:
    """Start Prefect's temporary server (no ``PREFECT_API_URL``) in its own session.

    A Ctrl-C in the terminal goes to the whole foreground process group. The
    temporary server was in it, so it stopped at once, and the interrupted run
    could no longer be marked, nor its sandbox lock released: the CLI hung on
    connection retries and failed with "unexpected ConnectError". In its own
    session the server only stops when the CLI stops it (at exit, as before).
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    import functools
    import subprocess
    import types

    from prefect.server.api import server as server_module

    if getattr(server_module.subprocess, "fleet_sandbox_detached", False):
        return
    detached = types.SimpleNamespace(
        **{name: getattr(subprocess, name) for name in dir(subprocess) if not name.startswith("__")}
    )
    detached.Popen = functools.partial(subprocess.Popen, start_new_session=True)
    detached.fleet_sandbox_detached = True
    # Only that module sees it: every other Popen in the process is unchanged.
    server_module.subprocess = detached  # type: ignore[assignment]


def cancel_interrupted_runs(run_ids: Sequence[UUID]) -> list[str]:
    """Mark the flow runs an interrupted CLI invocation started, and did not finish, Cancelled.

    Prefect's engine reports an interrupted run Crashed; a Ctrl-C is a
    cancellation, and ``sandbox resume`` continues it.

    Args:
        run_ids: The flow runs the invocation started (see :func:`cli.common.call_flow`).

    Returns:
        The ids of the runs marked.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    marked = []
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_final() and not run.state.is_crashed():
                continue
            client.set_flow_run_state(run.id, Cancelled(message="interrupted (SIGINT)"), force=True)
            marked.append(str(run.id))
    return marked
