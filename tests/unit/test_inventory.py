from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sandbox.errors import ConflictError
from sandbox.inventory import Inventory, InventoryError, NotFoundError, utcnow
from sandbox.models import STAGE_ORDER, SandboxKind, SandboxRecord, SandboxStatus, Stage, StageStatus


def record(name: str = "sandbox-a", source_env: str = "development") -> SandboxRecord:
    now = utcnow()
    return SandboxRecord(
        name=name,
        kind=SandboxKind.platform,
        source_env=source_env,
        ticket="OPS-1",
        branch="OPS-1-x",
        lifecycle_id="abc123",
        status=SandboxStatus.creating,
        created_at=now,
        expires_at=now + timedelta(hours=72),
    )


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    inv = Inventory(f"sqlite:///{tmp_path / 'inv.db'}")
    yield inv  # type: ignore[misc]
    inv.close()


def test_create_and_list_shape(inventory: Inventory) -> None:
    inventory.create(record())
    [entry] = [r.list_entry() for r in inventory.list()]
    assert {"name", "kind", "source_env", "status", "created_at", "expires_at", "stages"} <= entry.keys()
    assert [s["name"] for s in entry["stages"]] == [s.value for s in STAGE_ORDER]
    assert all(s == {"name": s["name"], "status": "pending", "executions": 0} for s in entry["stages"])
    assert entry["created_at"].endswith("Z")


def test_duplicate_name_conflicts(inventory: Inventory) -> None:
    inventory.create(record())
    with pytest.raises(ConflictError, match="sandbox 'sandbox-a' already exists"):
        inventory.create(record())


def test_stage_completion_counts_executions(inventory: Inventory) -> None:
    inventory.create(record())
    assert inventory.stage_result("sandbox-a", "abc123", Stage.provision) is None
    inventory.stage_started("sandbox-a", "abc123", Stage.provision)
    inventory.stage_failed("sandbox-a", "abc123", Stage.provision, "lock held")
    summary = {s.name: s for s in inventory.get("sandbox-a").stages}
    assert summary[Stage.provision].status is StageStatus.failed
    assert summary[Stage.provision].executions == 0
    inventory.stage_completed("sandbox-a", "abc123", Stage.provision, {"summary": "ok"})
    assert inventory.stage_result("sandbox-a", "abc123", Stage.provision) == {"summary": "ok"}
    summary = {s.name: s for s in inventory.get("sandbox-a").stages}
    assert (summary[Stage.provision].status, summary[Stage.provision].executions) == (StageStatus.completed, 1)


def test_update_delete_and_not_found(inventory: Inventory) -> None:
    inventory.create(record())
    updated = inventory.update("sandbox-a", status=SandboxStatus.destroyed, forced_destroy=True)
    assert updated.status is SandboxStatus.destroyed and updated.forced_destroy
    inventory.delete("sandbox-a")
    assert inventory.find("sandbox-a") is None
    with pytest.raises(NotFoundError, match="no sandbox named 'sandbox-a'"):
        inventory.get("sandbox-a")


def test_last_stage_result_by_source_env(inventory: Inventory) -> None:
    inventory.create(record("perf-a", "production"))
    inventory.create(record("perf-b", "production"))
    inventory.create(record("dev-c", "development"))
    inventory.stage_completed("perf-a", "abc123", Stage.performance_test, {"n": 1})
    inventory.stage_completed("dev-c", "abc123", Stage.performance_test, {"n": 3})
    assert inventory.last_stage_result(Stage.performance_test, source_env="production", exclude="perf-b") == {"n": 1}
    assert inventory.last_stage_result(Stage.performance_test, source_env="production", exclude="perf-a") is None


def test_unusable_database_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(InventoryError):
        Inventory(f"sqlite:///{tmp_path / 'file' / 'inv.db'}")
