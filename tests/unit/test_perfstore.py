"""Performance runs in the inventory database: recording, accepting, the baseline, and the migration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from sandbox.errors import ConflictError
from sandbox.perf.store import PerfRun, PerfRunNotFoundError, PerfRunStatus, PerfStore, metadata


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PerfStore]:
    perf = PerfStore(f"sqlite:///{tmp_path / 'inventory.db'}", migrate=False)
    metadata.create_all(perf.engine)
    yield perf
    perf.close()


def measured(
    store: PerfStore, run_id: str, *, scenario: str = "smoke", source: str = "production", p95: float = 30.0
) -> PerfRun:
    store.start_run(
        run_id=run_id,
        scenario=scenario,
        source_env=source,
        sandbox=f"perf-{run_id}",
        settings={"users": 4},
        flow_run_id=f"flow-{run_id}",
    )
    return store.finish_run(
        run_id,
        status=PerfRunStatus.passed,
        metrics={"p95_ms": p95, "requests_per_second": 100.0},
        comparison={"passed": True, "rows": []},
    )


def test_a_run_is_recorded_from_start_to_finish(store: PerfStore) -> None:
    started = store.start_run(
        run_id="r1", scenario="smoke", source_env="production", sandbox="perf-production-1", flow_run_id="f1"
    )
    assert (started.status, started.metrics, started.accepted, started.finished_at) == (
        PerfRunStatus.running,
        None,
        False,
        None,
    )
    assert store.start_run(run_id="r1", scenario="other", source_env="x", sandbox="y").scenario == "smoke"
    done = store.finish_run(
        "r1",
        status=PerfRunStatus.failed,
        settings={"users": 8},
        metrics={"p95_ms": 41.0},
        comparison={"passed": False},
        baseline_run_id="r0",
        chart_path="/charts/r1.png",
    )
    assert (done.status, done.metrics, done.baseline_run_id, done.settings) == (
        PerfRunStatus.failed,
        {"p95_ms": 41.0},
        "r0",
        {"users": 8},
    )
    assert done.finished_at is not None and done.created_at.tzinfo is not None
    assert store.get("r1") == done
    assert [r.run_id for r in store.runs_for_flow_run("f1")] == ["r1"]


def test_no_baseline_until_a_run_is_accepted(store: PerfStore) -> None:
    measured(store, "r1")
    assert store.baseline("smoke", "production") is None
    accepted = store.accept("r1")
    assert accepted.accepted and accepted.accepted_at is not None
    assert store.baseline("smoke", "production") == accepted


def test_the_baseline_is_the_last_accepted_run_of_the_same_scenario_and_source(store: PerfStore) -> None:
    measured(store, "r1", p95=30)
    measured(store, "r2", p95=31)
    measured(store, "other-scenario", scenario="peak")
    measured(store, "other-source", source="staging")
    store.accept("r2")
    store.accept("other-scenario")
    store.accept("other-source")
    baseline = store.baseline("smoke", "production")
    assert baseline is not None and baseline.run_id == "r2"
    store.accept("r1")  # an older run accepted later becomes the baseline again
    baseline = store.baseline("smoke", "production")
    assert baseline is not None and baseline.run_id == "r1"
    assert store.baseline("peak", "production").run_id == "other-scenario"  # type: ignore[union-attr]
    assert store.baseline("smoke", "staging").run_id == "other-source"  # type: ignore[union-attr]
    assert store.baseline("smoke", "development") is None


@pytest.mark.parametrize("status", [PerfRunStatus.running, PerfRunStatus.error, PerfRunStatus.cancelled])
def test_a_run_without_a_measurement_cannot_be_accepted(store: PerfStore, status: PerfRunStatus) -> None:
    store.start_run(run_id="r1", scenario="smoke", source_env="production", sandbox="s")
    if status is not PerfRunStatus.running:
        store.finish_run("r1", status=status, error="validate failed")
    with pytest.raises(ConflictError, match=f"r1 has no measurement to accept \\(status {status.value}\\)"):
        store.accept("r1")


def test_unknown_runs(store: PerfStore) -> None:
    assert store.find("nope") is None
    with pytest.raises(PerfRunNotFoundError, match="no performance run 'nope'"):
        store.accept("nope")
    with pytest.raises(PerfRunNotFoundError):
        store.finish_run("nope", status=PerfRunStatus.error)


def test_list_filters_newest_first(store: PerfStore) -> None:
    for run_id in ("a", "b"):
        measured(store, run_id)
    measured(store, "c", scenario="peak")
    assert {r.run_id for r in store.list()} == {"a", "b", "c"}
    assert {r.run_id for r in store.list(scenario="smoke")} == {"a", "b"}
    assert store.list(source_env="staging") == []


def test_revision_0002_creates_the_table_the_store_uses(tmp_path: Path) -> None:
    from sandbox.migrations import alembic_config, script_directory, upgrade_to_head

    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            upgrade_to_head(connection)
        inspector = sa.inspect(engine)
        migrated = {c["name"]: c for c in inspector.get_columns("perf_runs")}
        declared = metadata.tables["perf_runs"].columns
        assert set(migrated) == {c.name for c in declared}
        assert {n for n, c in migrated.items() if not c["nullable"]} == {c.name for c in declared if not c.nullable}
        assert {i["name"] for i in inspector.get_indexes("perf_runs")} == {
            i.name for i in metadata.tables["perf_runs"].indexes
        }
        with PerfStore(url) as store:  # opening migrates (a no-op now) and the store works on it
            measured(store, "r1")
            store.accept("r1")
            assert store.baseline("smoke", "production").run_id == "r1"  # type: ignore[union-attr]
        revision = script_directory().get_revision("0002_perf_runs")
        assert revision is not None and revision.down_revision == "0001"
        with engine.connect() as connection:
            command.downgrade(alembic_config(connection), "0001")
            connection.commit()
        assert "perf_runs" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
