"""The inventory on SQLite and on a real PostgreSQL server (started by the test fixture), and its migrations."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from sandbox import migrations
from sandbox.errors import ConflictError, TeardownBlockedError
from sandbox.inventory import (
    CleanupActionEntry,
    Inventory,
    InventoryBusyError,
    InventoryError,
    NotFoundError,
    redacted_url,
    utcnow,
)
from sandbox.models import STAGE_ORDER, SandboxKind, SandboxRecord, SandboxStatus, Stage, StageResult, StageStatus
from tests.pg_server import inventory_url, postgres_server, postgres_url  # noqa: F401

LEGACY_SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "inventory" / "legacy-sqlite-schema.sql"


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
def inventory(inventory_url: str) -> Iterator[Inventory]:  # noqa: F811
    inv = Inventory(inventory_url)
    yield inv
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


def stage_status(inventory: Inventory, stage: Stage) -> StageStatus:
    return {s.name: s for s in inventory.get("sandbox-a").stages}[stage].status


def test_recording_a_stage_stores_its_result_and_clears_the_failure(inventory: Inventory) -> None:
    inventory.create(record())
    inventory.update("sandbox-a", failed_stage=Stage.provision.value, last_error="earlier")
    with inventory.recording_stage("sandbox-a", "abc123", Stage.provision) as recording:
        assert stage_status(inventory, Stage.provision) is StageStatus.running
        recording.complete(StageResult(stage=Stage.provision, summary="up"))
    assert (inventory.stage_result("sandbox-a", "abc123", Stage.provision) or {})["summary"] == "up"
    done = inventory.get("sandbox-a")
    assert (done.failed_stage, done.last_error) == (None, None)


def test_recording_a_stage_that_raises_keeps_the_message_and_the_error(inventory: Inventory) -> None:
    inventory.create(record())
    with pytest.raises(TeardownBlockedError), inventory.recording_stage("sandbox-a", "abc123", Stage.teardown):
        raise TeardownBlockedError("finalizers pending on a")
    failed = inventory.get("sandbox-a")
    assert (failed.failed_stage, failed.last_error) == ("teardown", "finalizers pending on a")
    assert stage_status(inventory, Stage.teardown) is StageStatus.failed
    # An unexpected error is named by its type.
    with pytest.raises(KeyError), inventory.recording_stage("sandbox-a", "abc123", Stage.teardown):
        raise KeyError("kubeconfig")
    assert inventory.get("sandbox-a").last_error == "KeyError: 'kubeconfig'"


def test_recording_a_failure_without_an_error(inventory: Inventory) -> None:
    inventory.create(record())
    with inventory.recording_stage("sandbox-a", "abc123", Stage.validate) as recording:
        recording.fail("2 objects not Ready")
    failed = inventory.get("sandbox-a")
    assert (failed.failed_stage, failed.last_error) == ("validate", "2 objects not Ready")
    assert inventory.stage_result("sandbox-a", "abc123", Stage.validate) is None


def test_a_recording_that_keeps_other_failures_clears_only_its_own(inventory: Inventory) -> None:
    inventory.create(record())
    inventory.update("sandbox-a", failed_stage=Stage.teardown.value, last_error="blocked")
    with inventory.recording_stage("sandbox-a", "abc123", Stage.validate, keep_other_failures=True) as recording:
        recording.complete(StageResult(stage=Stage.validate, summary="passed"))
    assert inventory.get("sandbox-a").failed_stage == "teardown"
    inventory.update("sandbox-a", failed_stage=Stage.validate.value, last_error="not ready")
    with inventory.recording_stage("sandbox-a", "abc123", Stage.validate, keep_other_failures=True) as recording:
        recording.complete(StageResult(stage=Stage.validate, summary="passed"))
    assert inventory.get("sandbox-a").failed_stage is None


def test_update_delete_and_not_found(inventory: Inventory) -> None:
    inventory.create(record())
    updated = inventory.update("sandbox-a", status=SandboxStatus.destroyed, forced_destroy=True)
    assert updated.status is SandboxStatus.destroyed and updated.forced_destroy
    inventory.delete("sandbox-a")
    assert inventory.find("sandbox-a") is None
    with pytest.raises(NotFoundError, match="no sandbox named 'sandbox-a'"):
        inventory.get("sandbox-a")


def test_unusable_database_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(InventoryError):
        Inventory(f"sqlite:///{tmp_path / 'file' / 'inv.db'}")


def test_new_fields_round_trip_and_destruction_is_timed(inventory: Inventory) -> None:
    created = inventory.create(record().model_copy(update={"scale": "3 x large", "hourly_cost": 1.2, "owner": "ana"}))
    assert (created.scale, created.hourly_cost, created.owner, created.adopted) == ("3 x large", 1.2, "ana", False)
    assert created.updated_at == created.created_at and created.destroyed_at is None
    destroyed = inventory.update("sandbox-a", status=SandboxStatus.destroyed)
    assert destroyed.destroyed_at is not None and destroyed.destroyed_at >= created.created_at
    assert destroyed.updated_at == destroyed.destroyed_at
    reopened = inventory.update("sandbox-a", status=SandboxStatus.failed)
    assert reopened.destroyed_at is None
    assert inventory.names() == {"sandbox-a"}


def test_stage_bookkeeping_marks_the_record_active(inventory: Inventory) -> None:
    old = utcnow() - timedelta(days=2)
    inventory.create(record().model_copy(update={"created_at": old, "updated_at": old}))
    inventory.stage_started("sandbox-a", "abc123", Stage.provision)
    touched = inventory.get("sandbox-a").updated_at
    assert touched is not None and touched > old


def test_timestamps_come_back_timezone_aware_utc(inventory: Inventory) -> None:
    moment = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    inventory.create(record().model_copy(update={"created_at": moment, "expires_at": moment + timedelta(hours=1)}))
    got = inventory.get("sandbox-a")
    assert got.created_at == moment and got.created_at.utcoffset() == timedelta(0)
    assert got.list_entry(moment)["created_at"] == "2026-11-24T10:00:00Z"


def test_cleanup_actions_are_kept_per_run(inventory: Inventory) -> None:
    start = datetime.now(UTC)
    for run, target, status in (("run-1", "sb-a", "done"), ("run-1", "sb-b", "failed"), ("run-2", "sb-a", "done")):
        inventory.record_cleanup_action(
            CleanupActionEntry(
                run_id=run, kind="expired", target=target, action="teardown", status=status,
                reason="expired", detail="d", hourly_cost=0.5, estimated_saving=1.5,
                recorded_at=utcnow(), started_at=start, finished_at=start + timedelta(microseconds=250),
            )
        )  # fmt: skip
    run1 = inventory.cleanup_actions(run_id="run-1")
    assert [(e.target, e.status) for e in run1] == [("sb-a", "done"), ("sb-b", "failed")]
    assert [e.run_id for e in inventory.cleanup_actions(target="sb-a")] == ["run-1", "run-2"]
    # Microseconds survive: overlapping actions can be told apart.
    assert run1[0].finished_at is not None and run1[0].started_at is not None
    assert run1[0].finished_at - run1[0].started_at == timedelta(microseconds=250)


def test_a_new_database_is_migrated_to_the_newest_revision(inventory_url: str) -> None:  # noqa: F811
    Inventory(inventory_url).close()
    engine = create_engine(inventory_url)
    with engine.connect() as conn:
        assert migrations.current_revisions(conn) == migrations.head_revisions()
        assert "0001" in migrations.known_revisions()
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert {"sandboxes", "stage_runs", "cleanup_actions", "alembic_version"} <= tables


def test_opening_a_new_database_from_many_threads_at_once(inventory_url: str) -> None:  # noqa: F811
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            # A database new to this process: each thread migrates it or waits for the one that does.
            Inventory(inventory_url).close()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    inv = Inventory(inventory_url)
    inv.create(record())
    assert [r.name for r in inv.list()] == ["sandbox-a"]
    inv.close()


def migrations_cache() -> set[str]:
    from sandbox import database

    return database._MIGRATED


def test_a_sqlite_file_from_before_migrations_is_adopted_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_SCHEMA.read_text(encoding="utf-8"))
    conn.execute(
        "INSERT INTO sandboxes (name, kind, source_env, lifecycle_id, status, created_at, expires_at, keep,"
        " forced_destroy, overrides, terraform_workdir) VALUES ('old-one', 'platform', 'development', 'lc1',"
        " 'destroyed', '2026-01-01 10:00:00.000000', '2026-01-04 10:00:00.000000', 1, 0, '{}', '/tf')"
    )
    conn.execute(
        "INSERT INTO stage_runs (sandbox, lifecycle_id, stage, status, executions, result)"
        " VALUES ('old-one', 'lc1', 'provision', 'completed', 1, '{\"summary\": \"ok\"}')"
    )
    conn.commit()
    conn.close()
    inv = Inventory(f"sqlite:///{path}")
    old = inv.get("old-one")
    assert (old.status, old.keep, old.terraform_state_ref) == (SandboxStatus.destroyed, True, "/tf#old-one")
    assert (old.hourly_cost, old.updated_at, old.destroyed_at, old.adopted) == (None, None, None, False)
    # Destroyed before destruction times were kept: its cost so far is unknown, not "until now".
    assert old.cost_so_far(utcnow()) is None
    assert inv.stage_result("old-one", "lc1", Stage.provision) == {"summary": "ok"}
    inv.record_cleanup_action(
        CleanupActionEntry(
            run_id="r", kind="expired", target="old-one", action="teardown", status="done", recorded_at=utcnow()
        )
    )
    inv.close()
    with sqlite3.connect(path) as conn:
        versions = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    assert versions == migrations.head_revisions()


def test_a_database_migrated_by_a_newer_version_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'future.db'}"
    Inventory(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    engine.dispose()
    migrations_cache().discard(url)
    with pytest.raises(InventoryError, match="schema revision 0099_from_the_future.*upgrade fleet-sandbox"):
        Inventory(url)


def test_migrations_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'round.db'}"
    Inventory(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        command.downgrade(migrations.alembic_config(conn), "base")
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}
    with engine.connect() as conn:
        migrations.upgrade_to_head(conn)
        assert migrations.current_revisions(conn) == migrations.head_revisions()
    engine.dispose()


def test_urls_in_messages_hide_passwords() -> None:
    assert redacted_url("postgresql+psycopg://fleet:s3cret@db:5432/inv") == "postgresql+psycopg://fleet:***@db:5432/inv"
    # Nobody listens on port 1: a database that is down is worth retrying later.
    with pytest.raises(InventoryBusyError) as failed:
        Inventory("postgresql+psycopg://fleet:s3cret@127.0.0.1:1/inv?connect_timeout=2")
    assert "s3cret" not in str(failed.value) and "127.0.0.1" in str(failed.value)
