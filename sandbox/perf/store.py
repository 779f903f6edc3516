"""Performance runs and their baselines, in the inventory database.

One row per run of the ``performance_sandbox`` flow (table ``perf_runs``, made
by the Alembic revision ``0002_perf_runs``): which scenario against which
source environment, in which sandbox, the settings it ran with, the metrics it
measured, how it compared with its baseline, and whether it was accepted.

The **baseline** of a scenario and source environment is the run of that
scenario and source most recently *accepted* (``sandbox perf accept RUN``): a
run never becomes the baseline by itself, so a regression cannot slip in as
the new normal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, Boolean, DateTime, Index, MetaData, String, Text, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sandbox.database import database_errors, migrate_once, open_engine
from sandbox.errors import ConflictError, PermanentError, RetryableError
from sandbox.inventory import utcnow
from sandbox.redaction import redact

TABLE = "perf_runs"


class PerfStoreError(PermanentError):
    """The database refused an operation on performance runs."""


class PerfStoreBusyError(RetryableError):
    """The database is locked or unreachable for the moment."""


class PerfRunNotFoundError(PermanentError):
    """No performance run with that id."""


class PerfRunStatus(StrEnum):
    """Where a performance run is."""

    running = "running"
    passed = "passed"
    failed = "failed"  # measured, and a gate failed
    error = "error"  # no measurement: a stage failed
    cancelled = "cancelled"


class PerfRun(BaseModel):
    """One performance run as stored."""

    run_id: str = Field(description="The run's id (the sandbox lifecycle's id)")
    flow_run_id: str | None = Field(default=None, description="The Prefect flow run that made it")
    scenario: str
    source_env: str
    sandbox: str = Field(description="The performance sandbox the load ran against")
    status: PerfRunStatus
    settings: dict[str, Any] = Field(default_factory=dict, description="Scenario settings the load ran with")
    metrics: dict[str, Any] | None = Field(default=None, description="What the load measured")
    comparison: dict[str, Any] | None = Field(default=None, description="Percentage changes and gate verdicts")
    baseline_run_id: str | None = Field(default=None, description="The run compared against")
    accepted: bool = False
    accepted_at: datetime | None = None
    created_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    chart_path: str | None = None


class _Base(DeclarativeBase):
    metadata = MetaData()


class PerfRunRow(_Base):
    __tablename__ = TABLE
    # The baseline lookup: accepted runs of one scenario and source, newest acceptance first.
    __table_args__ = (Index("ix_perf_runs_baseline", "scenario", "source_env", "accepted", "accepted_at"),)

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    scenario: Mapped[str] = mapped_column(String(128))
    source_env: Mapped[str] = mapped_column(String(64))
    sandbox: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    comparison: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    baseline_run_id: Mapped[str | None] = mapped_column(String(64))
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
    chart_path: Mapped[str | None] = mapped_column(Text)


#: The table's metadata (for ``create_all`` in tests; the database gets it from Alembic).
metadata = _Base.metadata


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _model(row: PerfRunRow) -> PerfRun:
    return PerfRun(
        run_id=row.run_id,
        flow_run_id=row.flow_run_id,
        scenario=row.scenario,
        source_env=row.source_env,
        sandbox=row.sandbox,
        status=PerfRunStatus(row.status),
        settings=dict(row.settings or {}),
        metrics=dict(row.metrics) if row.metrics is not None else None,
        comparison=dict(row.comparison) if row.comparison is not None else None,
        baseline_run_id=row.baseline_run_id,
        accepted=bool(row.accepted),
        accepted_at=_aware(row.accepted_at),
        created_at=_aware(row.created_at) or utcnow(),
        finished_at=_aware(row.finished_at),
        error=row.error,
        chart_path=row.chart_path,
    )


class PerfStore:
    """Performance runs in the inventory database.

    Args:
        url: The inventory's SQLAlchemy URL.
        migrate: Bring the database to the newest schema first (Alembic, as the
            inventory does); tests that build the table with
            ``metadata.create_all`` pass ``False``.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self._engine: Engine = open_engine(url, PerfStoreError)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        if migrate:
            try:
                migrate_once(self._engine, url, PerfStoreBusyError, PerfStoreError)
            except BaseException:
                self._engine.dispose()
                raise

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (tests build the schema with it)."""
        return self._engine

    def close(self) -> None:
        """Release database connections."""
        self._engine.dispose()

    def __enter__(self) -> PerfStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _guard(self) -> AbstractContextManager[None]:
        return database_errors(PerfStoreBusyError, PerfStoreError)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._guard(), self._sessions.begin() as session:
            yield session

    # -- writing ------------------------------------------------------------

    def start_run(
        self,
        *,
        run_id: str,
        scenario: str,
        source_env: str,
        sandbox: str,
        settings: dict[str, Any] | None = None,
        flow_run_id: str | None = None,
    ) -> PerfRun:
        """Record a run that is starting (status ``running``); an existing run of that id is returned as is."""
        with self._session() as session:
            row = session.get(PerfRunRow, run_id)
            if row is None:
                row = PerfRunRow(
                    run_id=run_id,
                    flow_run_id=flow_run_id,
                    scenario=scenario,
                    source_env=source_env,
                    sandbox=sandbox,
                    status=PerfRunStatus.running.value,
                    settings=dict(settings or {}),
                    accepted=False,
                    created_at=utcnow(),
                )
                session.add(row)
            return _model(row)

    def finish_run(
        self,
        run_id: str,
        *,
        status: PerfRunStatus,
        settings: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        comparison: dict[str, Any] | None = None,
        baseline_run_id: str | None = None,
        error: str | None = None,
        chart_path: str | None = None,
    ) -> PerfRun:
        """Record how a run ended.

        Raises:
            PerfRunNotFoundError: Unknown run.
        """
        with self._session() as session:
            row = self._row(session, run_id)
            row.status = status.value
            if settings is not None:
                row.settings = dict(settings)
            if metrics is not None:
                row.metrics = dict(metrics)
            if comparison is not None:
                row.comparison = dict(comparison)
            if baseline_run_id is not None:
                row.baseline_run_id = baseline_run_id
            row.error = redact(error) if error is not None else None  # an error may quote a secret
            if chart_path is not None:
                row.chart_path = chart_path
            row.finished_at = utcnow()
            return _model(row)

    def accept(self, run_id: str) -> PerfRun:
        """Make a measured run the baseline of its scenario and source environment.

        Raises:
            PerfRunNotFoundError: Unknown run.
            ConflictError: The run has no measurement (it failed before the load
                ran, was cancelled, or is still running).
        """
        with self._session() as session:
            row = self._row(session, run_id)
            if row.status not in (PerfRunStatus.passed.value, PerfRunStatus.failed.value) or not row.metrics:
                raise ConflictError(f"performance run {run_id} has no measurement to accept (status {row.status})")
            row.accepted = True
            # Full precision: accepting again moves a run to the front, even within a second.
            row.accepted_at = datetime.now(UTC)
            return _model(row)

    # -- reading ------------------------------------------------------------

    def find(self, run_id: str) -> PerfRun | None:
        """The run, or ``None``."""
        with self._session() as session:
            row = session.get(PerfRunRow, run_id)
            return _model(row) if row is not None else None

    def get(self, run_id: str) -> PerfRun:
        """The run.

        Raises:
            PerfRunNotFoundError: Unknown run.
        """
        with self._session() as session:
            return _model(self._row(session, run_id))

    def runs_for_flow_run(self, flow_run_id: str) -> list[PerfRun]:
        """Every run a flow run made (retries make one each), oldest first."""
        with self._session() as session:
            rows = session.scalars(
                select(PerfRunRow).where(PerfRunRow.flow_run_id == flow_run_id).order_by(PerfRunRow.created_at)
            )
            return [_model(row) for row in rows]

    def baseline(self, scenario: str, source_env: str) -> PerfRun | None:
        """The most recently accepted run of ``scenario`` against ``source_env``, or ``None``."""
        with self._session() as session:
            row = session.scalar(
                select(PerfRunRow)
                .where(
                    PerfRunRow.scenario == scenario,
                    PerfRunRow.source_env == source_env,
                    PerfRunRow.accepted.is_(True),
                )
                .order_by(PerfRunRow.accepted_at.desc(), PerfRunRow.created_at.desc())
                .limit(1)
            )
            return _model(row) if row is not None else None

    def list(self, *, scenario: str | None = None, source_env: str | None = None) -> list[PerfRun]:
        """Runs, newest first, optionally of one scenario and/or source environment."""
        query = select(PerfRunRow)
        if scenario is not None:
            query = query.where(PerfRunRow.scenario == scenario)
        if source_env is not None:
            query = query.where(PerfRunRow.source_env == source_env)
        with self._session() as session:
            rows = session.scalars(query.order_by(PerfRunRow.created_at.desc(), PerfRunRow.run_id))
            return [_model(row) for row in rows]

    @staticmethod
    def _row(session: Session, run_id: str) -> PerfRunRow:
        row = session.get(PerfRunRow, run_id)
        if row is None:
            raise PerfRunNotFoundError(f"no performance run {run_id!r} in the inventory")
        return row
