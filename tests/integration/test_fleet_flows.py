"""The fleet-wide flows the UI runs (issue 18 item 5): fleet status, extend, accept a baseline.

Run as Prefect flows against a Prefect test server, on the demo fleet: the
``fleet-status`` artifact lists the environments and the live sandboxes; extend
moves a sandbox's expiry and protects it, as ``sandbox extend`` does; accepting a
measured run makes it the baseline, as ``sandbox perf accept`` does; bad input
fails the run with its cause in one line.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.fleet import fleet_status, performance_accept, sandbox_extend
from sandbox.config import load_config
from sandbox.demo import prepare_demo
from sandbox.errors import InvalidInputError
from sandbox.inventory import utcnow
from sandbox.models import SandboxKind, SandboxRecord, SandboxStatus
from sandbox.perf.store import PerfRunStatus, PerfStore
from sandbox.wiring import open_inventory
from tasks.fleet import FLEET_STATUS_KEY, ExtendRequest

pytestmark = pytest.mark.integration


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    config_path = prepare_demo(tmp_path / "fleet", development=False)
    config = load_config(config_path)
    inventory = open_inventory(config)
    now = utcnow()  # the product's clock (to the second): a report in the same second must not see a negative age
    try:
        inventory.create(
            SandboxRecord(
                name="live-one",
                kind=SandboxKind.platform,
                source_env="development",
                lifecycle_id="l1",
                status=SandboxStatus.active,
                created_at=now - timedelta(hours=3),
                expires_at=now + timedelta(hours=1),
                owner="ana",
                hourly_cost=1.5,
            )
        )
    finally:
        inventory.close()
    return config_path


def test_fleet_status_publishes_environments_and_live_sandboxes(fleet: Path, prefect_server: str) -> None:
    status = fleet_status(str(fleet))
    assert [env.name for env in status.environments] == ["development", "staging", "production"]
    assert [env.tracks for env in status.environments] == ["branch main", "semver 1.2.x", "tag 1.2.3"]
    assert [(s.name, s.owner) for s in status.sandboxes] == [("live-one", "ana")]

    async def latest() -> str:
        async with get_client() as client:
            artifact = await client.read_latest_artifacts()
            found = [a for a in artifact if a.key == FLEET_STATUS_KEY]
            assert found, "no fleet-status artifact"
            return str(found[0].data)

    markdown = asyncio.run(latest())
    assert "| live-one | ana | platform | active | 3h" in markdown
    assert "| development | branch main |" in markdown


def test_extend_moves_the_expiry_and_protects_the_sandbox(fleet: Path, prefect_server: str) -> None:
    config = load_config(fleet)
    line = sandbox_extend(ExtendRequest(name="live-one", ttl="24h", keep="keep"), config_path=str(fleet))
    assert line.startswith("live-one: expires ") and line.endswith("; protected from cleanup")
    inventory = open_inventory(config)
    try:
        record = inventory.get("live-one")
    finally:
        inventory.close()
    assert record.keep and record.expires_at > datetime.now(UTC) + timedelta(hours=24)
    with pytest.raises(InvalidInputError, match="nothing to change"):
        sandbox_extend(ExtendRequest(name="live-one"), config_path=str(fleet))


def test_accepting_a_measured_run_makes_it_the_baseline(fleet: Path, prefect_server: str) -> None:
    config = load_config(fleet)
    with PerfStore(config.inventory_url) as store:
        store.start_run(run_id="run1", scenario="smoke", source_env="production", sandbox="perf-production-1")
        store.finish_run("run1", status=PerfRunStatus.passed, metrics={"requests_per_second": 10.0})
    assert performance_accept("run1", config_path=str(fleet)) == "run run1 is the baseline of smoke from production"
    with PerfStore(config.inventory_url) as store:
        baseline = store.baseline("smoke", "production")
    assert baseline is not None and baseline.run_id == "run1"
