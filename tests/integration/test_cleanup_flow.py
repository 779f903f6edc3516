"""The ``cleanup-expired-sandboxes`` flow on a real Prefect server, with real git, terraform and databases.

Expired sandboxes have real records and simulated clusters (see
``tests/cleanup_support.py``); their teardown runs the normal teardown stage
(a nested Prefect task) against them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from prefect.client.orchestration import get_client

from cli.cleanup_cmd import cleanup as cleanup_command
from flows.cleanup import cleanup_expired_sandboxes
from sandbox.cleanup import CleanupFailedError, CleanupReport
from sandbox.config import FleetConfig
from sandbox.demo import prepare_demo
from sandbox.drivers.terraform import PythonTerraformDriver
from sandbox.inventory import CleanupActionEntry, Inventory, utcnow
from sandbox.models import SandboxStatus
from sandbox.wiring import open_inventory, sandbox_state_dir
from tests.cleanup_support import (
    EXAMPLE_REPO,
    add_sandbox,
    flux_objects,
    make_fleet,
    push_sandbox_branch,
    remote_branches,
)
from tests.pg_server import inventory_url, postgres_server, postgres_url  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo fleet, made once per module and copied by each test."""
    workdir = tmp_path_factory.mktemp("fleet-template") / "fleet"
    prepare_demo(workdir)
    return workdir


@pytest.fixture
def fleet(
    tmp_path: Path,
    inventory_url: str,  # noqa: F811
    fleet_template: Path,
) -> Iterator[tuple[FleetConfig, Inventory]]:
    config = make_fleet(tmp_path / "fleet", inventory_url, template=fleet_template)
    inventory = open_inventory(config)
    try:
        yield config, inventory
    finally:
        inventory.close()


def run_cleanup(config: FleetConfig, *, dry_run: bool = False) -> tuple[str, object]:
    run_id = uuid.uuid4().hex[:12]
    state = cleanup_expired_sandboxes(
        config_path=str(config.base_dir / "fleet.yaml"), dry_run=dry_run, run_id=run_id, return_state=True
    )
    return run_id, state


def max_overlap(entries: list[CleanupActionEntry]) -> int:
    """The most actions that were running at the same instant."""
    events = []
    for entry in entries:
        assert entry.started_at is not None and entry.finished_at is not None
        events += [(entry.started_at, 1), (entry.finished_at, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


async def artifact_rows(key: str) -> str:
    async with get_client() as client:
        artifact = await client.read_latest_artifacts()
        found = [a for a in artifact if a.key == key]
        assert found, f"no artifact {key}"
        return str(found[0].data)


def test_a_hundred_expired_sandboxes_are_torn_down_ten_at_a_time(
    prefect_server: str, tmp_path: Path, fleet_template: Path
) -> None:
    # On SQLite, the default; the tests below run the flow on both databases.
    config = make_fleet(tmp_path / "fleet", template=fleet_template)
    inventory = open_inventory(config)
    names = [f"sb-{i:03d}" for i in range(100)]
    for name in names:
        add_sandbox(config, inventory, name)
    add_sandbox(config, inventory, "sb-keep", keep=True)
    run_id, state = run_cleanup(config)
    assert state.is_completed(), state  # type: ignore[attr-defined]
    report = state.result()  # type: ignore[attr-defined]
    assert isinstance(report, CleanupReport)
    assert (report.count("done"), report.count("failed"), report.protected_expired) == (100, 0, 1)
    entries = inventory.cleanup_actions(run_id=run_id)
    assert sorted(e.target for e in entries) == names and {e.status for e in entries} == {"done"}
    peak = max_overlap(entries)
    assert 2 <= peak <= 10, peak
    records = {r.name: r for r in inventory.list()}
    assert {records[n].status for n in names} == {SandboxStatus.destroyed}
    assert all(records[n].destroyed_at is not None for n in names)
    assert records["sb-keep"].status is SandboxStatus.active
    # The real teardown ran: each cluster is back to its root Kustomization alone.
    assert flux_objects(sandbox_state_dir(config, "sb-042") / "simulated-cluster") == ["flux-system"]
    assert flux_objects(sandbox_state_dir(config, "sb-keep") / "simulated-cluster") == ["apps", "flux-system"]
    assert "sb-042" in asyncio.run(artifact_rows("sandbox-cleanup"))
    inventory.close()


def test_a_failing_teardown_stops_no_other_and_fails_the_run(
    prefect_server: str, fleet: tuple[FleetConfig, Inventory], capsys: pytest.CaptureFixture[str]
) -> None:
    config, inventory = fleet
    add_sandbox(config, inventory, "sb-first")
    add_sandbox(config, inventory, "sb-stuck", controller_gone=True)
    add_sandbox(config, inventory, "sb-last")
    capsys.readouterr()
    # `sandbox cleanup`, in this process (the flow runs here either way).
    with pytest.raises(typer.Exit) as exited:
        cleanup_command(dry_run=False, output="text", config=config.base_dir / "fleet.yaml")
    assert exited.value.exit_code == 1
    out, err = capsys.readouterr()
    table = [line for line in out.splitlines() if line.startswith("expired ")]
    assert sorted(line.split()[1] for line in table) == ["sb-first", "sb-last", "sb-stuck"]
    run_id = next(line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("cleanup "))
    [message] = [line for line in err.splitlines() if line.startswith("sandbox: error:")]
    assert message.startswith(f"sandbox: error: cleanup {run_id}: 1 of 3 action(s) failed; teardown sb-stuck:")
    outcomes = {e.target: (e.status, e.detail) for e in inventory.cleanup_actions(run_id=run_id)}
    assert outcomes["sb-first"][0] == outcomes["sb-last"][0] == "done"
    assert outcomes["sb-stuck"][0] == "failed"
    assert "Kustomization/flux-system/apps (finalizers.fluxcd.io)" in (outcomes["sb-stuck"][1] or "")
    assert inventory.get("sb-first").status is inventory.get("sb-last").status is SandboxStatus.destroyed
    stuck = inventory.get("sb-stuck")
    assert stuck.status is SandboxStatus.teardown_blocked and stuck.destroyed_at is None
    # The flow run itself failed (what the example automation alerts on), after every action ran.
    state = run_cleanup(config)[1]
    assert state.is_failed() and isinstance(state.result(raise_on_failure=False), CleanupFailedError)  # type: ignore[attr-defined]


def test_each_orphan_kind_is_resolved_and_the_next_run_only_repeats_the_open_proposal(
    prefect_server: str, fleet: tuple[FleetConfig, Inventory], tmp_path: Path
) -> None:
    config, inventory = fleet
    # An orphaned terraform state: provisioned, then the record was lost.
    workdir = sandbox_state_dir(config, "sb-orphan") / "terraform"
    tf = PythonTerraformDriver()
    tf.prepare(workdir, EXAMPLE_REPO / "infra" / "cluster", workspace="sb-orphan")
    tf.apply(
        workdir,
        {
            "cluster_name": "sb-orphan",
            "kubernetes_version": "1.31",
            "node_count": 2,
            "node_size": "small",
            "simulation_dir": str(sandbox_state_dir(config, "sb-orphan") / "simulated-cluster"),
        },
    )
    # An orphaned branch, a sandbox directory merged into main, a record whose cluster is gone.
    push_sandbox_branch(config, tmp_path / "work", "OPS-4-lost", "sb-lost", sync_branch="OPS-4-lost")
    push_sandbox_branch(config, tmp_path / "work", "main", "sb-merged", sync_branch="OPS-2-merged")
    add_sandbox(
        config, inventory, "sb-stale", expires_in=timedelta(days=1), cluster=False,
        updated_at=utcnow() - timedelta(hours=2),
    )  # fmt: skip
    dry_id, dry = run_cleanup(config, dry_run=True)
    planned = dry.result()  # type: ignore[attr-defined]
    assert sorted((o.action.kind.value, o.action.target) for o in planned.outcomes) == [
        ("orphan-branch", "OPS-4-lost"),
        ("orphan-directory", "clusters/sb-merged"),
        ("orphan-state", "sb-orphan"),
        ("stale-record", "sb-stale"),
    ]
    # 2 x small at 0.1/h for the assumed 168 h.
    orphan = next(o.action for o in planned.outcomes if o.action.target == "sb-orphan")
    assert (orphan.hourly_cost, orphan.estimated_saving) == (0.2, 33.6)
    assert tf.has_state(workdir, "sb-orphan") and "OPS-4-lost" in remote_branches(config)
    assert inventory.find("sb-orphan") is None and inventory.cleanup_actions(run_id=dry_id) == []

    run_id, state = run_cleanup(config)
    assert state.is_completed(), state  # type: ignore[attr-defined]
    assert {e.target: e.status for e in inventory.cleanup_actions(run_id=run_id)} == {
        "OPS-4-lost": "done",
        "clusters/sb-merged": "done",
        "sb-orphan": "done",
        "sb-stale": "done",
    }
    assert not tf.has_state(workdir, "sb-orphan")
    assert not (sandbox_state_dir(config, "sb-orphan") / "simulated-cluster").exists()
    adopted = inventory.get("sb-orphan")
    assert adopted.adopted and adopted.status is SandboxStatus.destroyed
    assert adopted.overrides == {"node_count": 2} and adopted.hourly_cost == 0.2
    assert inventory.get("sb-stale").status is SandboxStatus.destroyed
    assert "OPS-4-lost" not in remote_branches(config)
    assert "fleet-sandbox-cleanup/remove-sb-merged" in remote_branches(config)
    # Until someone merges the removal pull request, the directory is proposed again (the same pull request).
    _, again = run_cleanup(config, dry_run=True)
    assert [o.action.target for o in again.result().outcomes] == ["clusters/sb-merged"]  # type: ignore[attr-defined]
