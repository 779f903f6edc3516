"""The upcoming runs Prefect's scheduler must make of ``prefect.yaml``'s cron schedules (issue 18).

The nightly cleanup fires at 02:00 UTC every day, the performance sandbox at
03:00 UTC on Mondays, the fleet status every hour. The times are computed here by hand, not with the cron
library the server uses, and ``tests/integration/test_schedules.py`` checks that
these are the expressions ``prefect.yaml`` has. :func:`scheduled_as_the_cron_says`
reads a server through the Prefect client as the UI's Upcoming tab does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import DeploymentResponse
from prefect.client.schemas.sorting import FlowRunSort

from tests.serving import assert_no_service_errors

#: How many upcoming runs of a schedule the scheduler keeps (Prefect's default ``min_runs``).
UPCOMING = 3


def nightly_after(moment: datetime) -> datetime:
    """The first 02:00 UTC after ``moment`` (``0 2 * * *``)."""
    at = moment.astimezone(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
    return at if at > moment else at + timedelta(days=1)


def hourly_after(moment: datetime) -> datetime:
    """The first full hour after ``moment`` (``0 * * * *``)."""
    at = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at if at > moment else at + timedelta(hours=1)


def weekly_after(moment: datetime) -> datetime:
    """The first Monday 03:00 UTC after ``moment`` (``0 3 * * 1``)."""
    at = moment.astimezone(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    at -= timedelta(days=at.weekday())  # this week's Monday
    return at if at > moment else at + timedelta(weeks=1)


#: deployment -> (its flow, its cron in prefect.yaml, the first time that cron fires after a moment).
SCHEDULED: dict[str, tuple[str, str, Callable[[datetime], datetime]]] = {
    "nightly-cleanup": ("cleanup-expired-sandboxes", "0 2 * * *", nightly_after),
    "performance": ("performance-sandbox", "0 3 * * 1", weekly_after),
    "fleet-status": ("fleet-status", "0 * * * *", hourly_after),
}


def fire_times(deployment: str, after: datetime, count: int = UPCOMING) -> list[datetime]:
    """The next ``count`` times the deployment's cron fires after ``after``."""
    following = SCHEDULED[deployment][2]
    times = [following(after)]
    while len(times) < count:
        times.append(following(times[-1]))
    return times


def upcoming_runs(client: SyncPrefectClient, deployment_id: Any) -> list[FlowRun]:
    """The deployment's Scheduled flow runs, soonest first (the UI's Upcoming tab)."""
    scheduled = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]), state=scheduled),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
    )


def scheduled_deployments(client: SyncPrefectClient) -> dict[str, DeploymentResponse] | None:
    """The scheduled deployments of ``prefect.yaml`` on the server by name; ``None`` until all are there."""
    found = {(d.name, d.flow_id): d for d in client.read_deployments()}
    wanted = {}
    for (name, flow_id), deployment in found.items():
        if name in SCHEDULED and client.read_flow(flow_id).name == SCHEDULED[name][0]:
            wanted[name] = deployment
    return wanted if set(wanted) == set(SCHEDULED) else None


def scheduled_as_the_cron_says(
    client: SyncPrefectClient, server_log: Path, deployments: dict[str, DeploymentResponse]
) -> dict[str, list[FlowRun]] | None:
    """Each deployment's next runs once its Scheduled runs are at its cron's next times; ``None`` until then.

    A traceback or service error in the server's log fails at once: a scheduler
    failing on every loop would never make them.
    """
    assert_no_service_errors(server_log)
    now = datetime.now(UTC)
    found = {}
    for name, deployment in deployments.items():
        runs = [run for run in upcoming_runs(client, deployment.id) if (run.expected_start_time or now) > now]
        if [run.expected_start_time for run in runs[:UPCOMING]] != fire_times(name, now):
            return None
        found[name] = runs[:UPCOMING]
    return found


def check_scheduled_runs(runs: dict[str, list[FlowRun]], deployments: dict[str, DeploymentResponse]) -> None:
    """The runs are the scheduler's: Scheduled, auto-scheduled, with their deployment's parameters."""
    for name, deployment in deployments.items():
        assert deployment.schedules and all(schedule.active for schedule in deployment.schedules), name
        assert len(runs[name]) == UPCOMING, (name, runs[name])
        for run in runs[name]:
            assert run.state is not None and run.state.name == "Scheduled", (name, run.state)
            assert run.auto_scheduled and "auto-scheduled" in run.tags, (name, run.tags)
            assert run.created_by is not None and run.created_by.type == "SCHEDULE", (name, run.created_by)
            assert run.parameters == deployment.parameters, (name, run.parameters, deployment.parameters)
