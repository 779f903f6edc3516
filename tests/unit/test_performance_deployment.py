"""The weekly performance deployment in prefect.yaml: it loads, its parameters validate, it runs weekly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.server.schemas.schedules import CronSchedule

from sandbox.perf.scenario import PerformanceRequest
from tests.conftest import PROJECT_ROOT


def deployment() -> dict[str, Any]:
    document = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    [found] = [d for d in document["deployments"] if d["entrypoint"] == "flows/performance.py:performance_sandbox"]
    return found


def test_the_deployment_loads_the_flow_and_its_parameters_validate() -> None:
    flow: Any = load_flow_from_entrypoint(str(PROJECT_ROOT / deployment()["entrypoint"]))
    assert flow.name == "performance-sandbox"
    assert flow.on_cancellation_hooks and flow.on_crashed_hooks
    request = flow.validate_parameters(deployment()["parameters"])["request"]
    assert isinstance(request, PerformanceRequest)
    assert (request.source_env, request.scenario, request.scale) == ("production", "smoke", "source")


def test_the_deployment_runs_weekly() -> None:
    [schedule] = deployment()["schedules"]
    cron = CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone", "UTC"))
    start = datetime(2026, 11, 28, tzinfo=UTC)
    dates = asyncio.run(cron.get_dates(n=3, start=start))
    assert [b - a for a, b in zip(dates, dates[1:], strict=False)] == [timedelta(days=7)] * 2
