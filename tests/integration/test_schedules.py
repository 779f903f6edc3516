"""Issue 18: the schedules of the served deployments fire, on SQLite and on PostgreSQL.

``python -m deployments.serve`` (``make serve``) starts a real Prefect server,
its scheduler service included, and serves every deployment of ``prefect.yaml``
for the demo fleet: with the server's database in its home (SQLite), and on a
throwaway PostgreSQL (``tests/pg_server.py``), the team server's database. The
scheduler must create the upcoming runs of the nightly cleanup (02:00 UTC every
day) and of the weekly performance sandbox (03:00 UTC on Mondays): flow runs in
the Scheduled state, auto-scheduled, at the next times of their cron, with the
served deployment's parameters (the served fleet's fleet.yaml) — what the UI's
Upcoming tab lists. They are read through the Prefect client (``tests/upcoming.py``).

The scheduler loops every second here (60 s by default; a second loop, for
deployments changed in the last seconds, runs every 5 s), so the test waits for
the server, not for the defaults. The server's log is read for tracebacks and
service errors while waiting and after the server stopped (``tests/serving.py``):
with SQLAlchemy 2.1 both scheduler loops failed on every pass
(``InvalidRequestError: Can't evaluate bulk DML statement``) and no run was
ever created, while the API answered and the UI showed the schedules on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.responses import DeploymentResponse
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.serve import server_answers
from deployments.spec import load_deployments
from sandbox.demo import prepare_demo
from tests.pg_server import PostgresServer, postgres_server  # noqa: F401
from tests.polling import poll
from tests.serving import assert_no_service_errors, serve_deployments
from tests.upcoming import (
    SCHEDULED,
    check_scheduled_runs,
    fire_times,
    scheduled_as_the_cron_says,
    scheduled_deployments,
)

pytestmark = pytest.mark.integration

#: The served server's scheduler: its loop over all deployments every second (60 s by default).
FAST_SCHEDULER = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"}


def test_the_expected_times_are_those_of_prefect_yaml() -> None:
    """The cron expressions tests/upcoming.py computes times for are the ones prefect.yaml schedules."""
    crons = {spec.name: [(s.cron, s.timezone, s.active) for s in spec.schedules] for spec in load_deployments()}
    assert {name: cron for name, cron in crons.items() if cron} == {
        name: [(cron, "UTC", True)] for name, (_, cron, _) in SCHEDULED.items()
    }
    monday_noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert fire_times("nightly-cleanup", monday_noon) == [datetime(2026, 3, d, 2, tzinfo=UTC) for d in (3, 4, 5)]
    assert fire_times("performance", monday_noon) == [datetime(2026, 3, d, 3, tzinfo=UTC) for d in (9, 16, 23)]
    assert fire_times("performance", datetime(2026, 3, 2, 2, 59, tzinfo=UTC))[0] == datetime(2026, 3, 2, 3, tzinfo=UTC)
    assert fire_times("nightly-cleanup", datetime(2026, 3, 2, 2, tzinfo=UTC))[0] == datetime(2026, 3, 3, 2, tzinfo=UTC)
    assert fire_times("fleet-status", monday_noon) == [datetime(2026, 3, 2, h, tzinfo=UTC) for h in (13, 14, 15)]
    before_midnight = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    assert fire_times("fleet-status", before_midnight)[0] == datetime(2026, 3, 3, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def server_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The served server's database: ``None`` for SQLite in its home, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        yield None
        return
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    name = postgres.create_database()
    try:
        yield postgres.url(name, "postgresql+asyncpg")
    finally:
        with contextlib.suppress(Exception):
            postgres.drop_database(name)


# A hang guard, not a speed bar: a server (and PostgreSQL) starting on a loaded two-core CI.
@pytest.mark.timeout(600)
def test_the_scheduler_creates_the_upcoming_cleanup_and_performance_runs(
    server_database: str | None, tmp_path: Path
) -> None:
    config_path = prepare_demo(tmp_path / "fleet", development=False)
    with serve_deployments(tmp_path / "serve", config_path, server_database, env=FAST_SCHEDULER) as served:

        def server_up() -> bool:
            assert_no_service_errors(served.server_log)
            return server_answers(served.api_url)

        poll(f"the Prefect server that serve starts (see {served.log_path})", server_up, timeout=300)
        with temporary_settings(updates={PREFECT_API_URL: served.api_url}), get_client(sync_client=True) as client:

            def deployments_served() -> dict[str, DeploymentResponse] | None:
                assert_no_service_errors(served.server_log)
                return scheduled_deployments(client)

            deployments = poll(f"the served deployments (see {served.log_path})", deployments_served, timeout=300)
            runs = poll(
                f"the scheduler to create the upcoming runs (server log {served.server_log})",
                lambda: scheduled_as_the_cron_says(client, served.server_log, deployments),
                timeout=120,
                interval=1,
            )
            check_scheduled_runs(runs, deployments)
            # Scheduled runs start against the served fleet, as runs started from its forms do.
            assert deployments["nightly-cleanup"].parameters == {"config_path": str(config_path), "dry_run": False}
            assert deployments["performance"].parameters == {
                "request": {"source_env": "production", "scenario": "smoke", "config_path": str(config_path)}
            }
    # Leaving serve_deployments stopped serve and its server, then read the server's log once more.
