"""The sandbox inventory: records and per-stage completion, in SQL via SQLAlchemy.

SQLite by default, any SQLAlchemy URL (PostgreSQL for teams, with the
``postgresql+psycopg://`` driver) by configuration. The inventory is the
product's memory independent of Prefect: a resumed run skips every stage
recorded here as completed, even if Prefect's result storage was lost.

The schema is owned by the Alembic migrations in :mod:`sandbox.migrations`;
opening an inventory upgrades its database to the newest revision (once per
process and database), so the table classes below only *map* the schema.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sandbox.database import database_errors, migrate_once, open_engine, redacted_url
from sandbox.errors import ConflictError, PermanentError, RetryableError, error_message
from sandbox.models import (
    STAGE_ORDER,
    SandboxKind,
    SandboxRecord,
    SandboxStatus,
    Stage,
    StageResult,
    StageStatus,
    StageSummary,
)
from sandbox.redaction import redact, redact_value


class InventoryError(PermanentError):
    """The inventory database refused an operation (full disk, bad URL, ...)."""


class InventoryBusyError(RetryableError):
    """The inventory database is locked or unreachable for the moment."""


class NotFoundError(PermanentError):
    """No sandbox of that name in the inventory."""


class _Base(DeclarativeBase):
    pass


class SandboxRow(_Base):
    __tablename__ = "sandboxes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    source_env: Mapped[str] = mapped_column(String(64))
    ticket: Mapped[str | None] = mapped_column(String(128))
    summary: Mapped[str | None] = mapped_column(Text)
    branch: Mapped[str | None] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(128))
    lifecycle_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    keep: Mapped[bool] = mapped_column(Boolean, default=False)
    forced_destroy: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_stage: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    terraform_workdir: Mapped[str | None] = mapped_column(Text)
    terraform_workspace: Mapped[str | None] = mapped_column(String(128))
    cluster_endpoint: Mapped[str | None] = mapped_column(Text)
    kubernetes_version: Mapped[str | None] = mapped_column(String(32))
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pull_request_url: Mapped[str | None] = mapped_column(Text)
    scale: Mapped[str | None] = mapped_column(String(64))
    hourly_cost: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    destroyed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    adopted: Mapped[bool] = mapped_column(Boolean, default=False)


class StageRow(_Base):
    __tablename__ = "stage_runs"
    __table_args__ = (UniqueConstraint("sandbox", "lifecycle_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sandbox: Mapped[str] = mapped_column(ForeignKey("sandboxes.name", ondelete="CASCADE"))
    lifecycle_id: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    executions: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)


class CleanupActionRow(_Base):
    __tablename__ = "cleanup_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    hourly_cost: Mapped[float | None] = mapped_column(Float)
    estimated_saving: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CleanupActionEntry(BaseModel):
    """One recorded cleanup action: what a cleanup run did (or failed to do) to one target."""

    run_id: str
    kind: str = Field(description="expired, orphan-state, orphan-branch, orphan-directory or stale-record")
    target: str = Field(description="Sandbox name, branch or cluster directory")
    action: str = Field(description="What cleanup does about it")
    status: str = Field(description="done or failed")
    reason: str | None = None
    detail: str | None = None
    hourly_cost: float | None = None
    estimated_saving: float | None = None
    recorded_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


def utcnow() -> datetime:
    """Now, timezone-aware UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _maybe_aware(moment: datetime | None) -> datetime | None:
    return _aware(moment) if moment is not None else None


class StageRecording:
    """The outcome of one stage run, handed to :meth:`Inventory.recording_stage` by the block it wraps."""

    def __init__(self) -> None:
        self.result: StageResult | None = None
        self.failure: str | None = None

    def complete(self, result: StageResult) -> StageResult:
        """The stage completed with ``result`` (returned, for the caller's convenience)."""
        self.result = result
        return result

    def fail(self, message: str) -> None:
        """The stage failed without an exception (a validation report that did not pass)."""
        self.failure = message


class Inventory:
    """Sandbox records, stage completion and cleanup actions.

    Opening one upgrades the database's schema to the newest migration.

    Args:
        url: SQLAlchemy database URL (``sqlite:///path``, ``postgresql+psycopg://user@host:port/db``).

    Raises:
        InventoryError: Unusable URL, missing driver, unreachable or refusing database, or a
            database migrated by a newer fleet-sandbox.
        InventoryBusyError: The database is locked or not reachable for the moment.
    """

    def __init__(self, url: str) -> None:
        self.url = redacted_url(url)
        self._engine: Engine = open_engine(url, InventoryError)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        try:
            migrate_once(self._engine, url, InventoryBusyError, InventoryError)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def dialect(self) -> str:
        """The database's SQLAlchemy dialect name (``sqlite``, ``postgresql``)."""
        return str(self._engine.dialect.name)

    def close(self) -> None:
        """Release database connections."""
        self._engine.dispose()

    def _guard(self) -> AbstractContextManager[None]:
        # Integrity errors stay as they are: callers turn them into conflicts.
        return database_errors(InventoryBusyError, InventoryError, keep=(IntegrityError,))

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._guard(), self._sessions.begin() as session:
            yield session

    # -- sandboxes --------------------------------------------------------

    def create(self, record: SandboxRecord) -> SandboxRecord:
        """Insert a new sandbox record.

        Raises:
            ConflictError: A sandbox of that name is already recorded.
        """
        row = SandboxRow(
            **record.model_dump(exclude={"stages"}, mode="python"),
        )
        row.kind = record.kind.value
        row.status = record.status.value
        row.updated_at = record.updated_at or record.created_at
        if record.status is SandboxStatus.destroyed and row.destroyed_at is None:
            row.destroyed_at = row.updated_at
        try:
            with self._session() as session:
                session.add(row)
        except IntegrityError:
            raise ConflictError(f"sandbox {record.name!r} already exists") from None
        return self.get(record.name)

    def find(self, name: str) -> SandboxRecord | None:
        """The record, or ``None``."""
        with self._session() as session:
            row = session.get(SandboxRow, name)
            return self._record(session, row) if row else None

    def get(self, name: str) -> SandboxRecord:
        """The record.

        Raises:
            NotFoundError: Unknown sandbox.
        """
        record = self.find(name)
        if record is None:
            raise NotFoundError(f"no sandbox named {name!r} in the inventory")
        return record

    def list(self) -> list[SandboxRecord]:
        """Every record, oldest first."""
        with self._session() as session:
            rows = session.scalars(select(SandboxRow).order_by(SandboxRow.created_at, SandboxRow.name))
            return [self._record(session, row) for row in rows]

    def names(self) -> set[str]:
        """The names of every record (destroyed ones too)."""
        with self._session() as session:
            return set(session.scalars(select(SandboxRow.name)))

    def update(self, name: str, **fields: Any) -> SandboxRecord:
        """Change fields of a record (enums are stored by value).

        ``updated_at`` is set to now; a change of ``status`` to destroyed also sets
        ``destroyed_at`` (unless given), and a change away from it clears it.
        """
        with self._session() as session:
            row = session.get(SandboxRow, name)
            if row is None:
                raise NotFoundError(f"no sandbox named {name!r} in the inventory")
            now = utcnow()
            for key, value in fields.items():
                if not hasattr(SandboxRow, key) or key.startswith("_"):
                    raise AttributeError(key)
                # Free text (last_error above all) may quote a secret: never stored.
                setattr(row, key, redact_value(getattr(value, "value", value)))
            if "status" in fields and "destroyed_at" not in fields:
                if row.status == SandboxStatus.destroyed.value:
                    row.destroyed_at = row.destroyed_at or now
                else:
                    row.destroyed_at = None
            if "updated_at" not in fields:
                row.updated_at = now
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove a record and its stage rows (used to undo a half-made creation)."""
        with self._session() as session:
            for stage_row in session.scalars(select(StageRow).where(StageRow.sandbox == name)):
                session.delete(stage_row)
            row = session.get(SandboxRow, name)
            if row is not None:
                session.delete(row)

    # -- stages -----------------------------------------------------------

    def stage_started(self, name: str, lifecycle_id: str, stage: Stage) -> None:
        """Mark a stage as running."""
        with self._session() as session:
            row = self._stage_row(session, name, lifecycle_id, stage)
            row.status = StageStatus.running.value
            row.started_at = utcnow()
            row.error = None
            self._touch(session, name, row.started_at)

    def stage_completed(self, name: str, lifecycle_id: str, stage: Stage, result: dict[str, Any]) -> None:
        """Record a completed run of a stage with its (secret-free) result."""
        json.dumps(result)  # results must be plain data
        with self._session() as session:
            row = self._stage_row(session, name, lifecycle_id, stage)
            row.status = StageStatus.completed.value
            row.executions = (row.executions or 0) + 1
            row.finished_at = utcnow()
            row.result = redact_value(result)
            row.error = None
            self._touch(session, name, row.finished_at)

    def stage_failed(self, name: str, lifecycle_id: str, stage: Stage, error: str) -> None:
        """Record a failed attempt of a stage (its error redacted: see :mod:`sandbox.redaction`)."""
        with self._session() as session:
            row = self._stage_row(session, name, lifecycle_id, stage)
            if row.status != StageStatus.completed.value:
                row.status = StageStatus.failed.value
            row.finished_at = utcnow()
            row.error = redact(error)
            self._touch(session, name, row.finished_at)

    @contextmanager
    def recording_stage(
        self, name: str, lifecycle_id: str, stage: Stage, *, keep_other_failures: bool = False
    ) -> Iterator[StageRecording]:
        """Record one run of a stage: the bookkeeping every caller of a stage shares.

        The stage is marked running on entry. When the block raises, the stage and the
        sandbox record a failure with the error's message (:func:`sandbox.errors.error_message`)
        and the error goes on; when the block calls :meth:`StageRecording.fail`, the same
        without an error. When it calls :meth:`StageRecording.complete`, the stage's result
        is stored and the sandbox's failure is cleared.

        Args:
            name: The sandbox.
            lifecycle_id: Its lifecycle.
            stage: The stage run.
            keep_other_failures: Clear the sandbox's failure only when it is this stage's
                (a revalidation must not hide a failed teardown).
        """
        self.stage_started(name, lifecycle_id, stage)
        recording = StageRecording()
        try:
            yield recording
        except Exception as exc:
            self._stage_failure(name, lifecycle_id, stage, error_message(exc))
            raise
        if recording.failure is not None:
            self._stage_failure(name, lifecycle_id, stage, recording.failure)
        elif recording.result is not None:
            self.stage_completed(name, lifecycle_id, stage, recording.result.model_dump(mode="json"))
            if not keep_other_failures or self.get(name).failed_stage == stage.value:
                self.update(name, failed_stage=None, last_error=None)

    def _stage_failure(self, name: str, lifecycle_id: str, stage: Stage, message: str) -> None:
        self.stage_failed(name, lifecycle_id, stage, message)
        self.update(name, failed_stage=stage.value, last_error=message)

    def stage_result(self, name: str, lifecycle_id: str, stage: Stage) -> dict[str, Any] | None:
        """The stored result of a completed stage, or ``None`` if it has not completed."""
        with self._session() as session:
            row = session.scalar(
                select(StageRow).where(
                    StageRow.sandbox == name,
                    StageRow.lifecycle_id == lifecycle_id,
                    StageRow.stage == stage.value,
                )
            )
            if row is None or row.status != StageStatus.completed.value:
                return None
            return dict(row.result or {})

    def stage_finished_at(self, name: str, lifecycle_id: str, stage: Stage) -> datetime | None:
        """When a completed stage finished (UTC), or ``None`` if it has not completed."""
        with self._session() as session:
            row = session.scalar(
                select(StageRow).where(
                    StageRow.sandbox == name,
                    StageRow.lifecycle_id == lifecycle_id,
                    StageRow.stage == stage.value,
                )
            )
            if row is None or row.status != StageStatus.completed.value or row.finished_at is None:
                return None
            return _aware(row.finished_at)

    @staticmethod
    def _touch(session: Session, name: str, moment: datetime) -> None:
        sandbox = session.get(SandboxRow, name)
        if sandbox is not None:
            sandbox.updated_at = moment

    # -- cleanup actions --------------------------------------------------

    def record_cleanup_action(self, entry: CleanupActionEntry) -> None:
        """Keep what a cleanup run did to one target (an audit trail; never secrets)."""
        with self._session() as session:
            session.add(CleanupActionRow(**redact_value(entry.model_dump())))

    def cleanup_actions(
        self, run_id: str | None = None, target: str | None = None
    ) -> builtins.list[CleanupActionEntry]:
        """Recorded cleanup actions, oldest first, of one run and/or one target."""
        query = select(CleanupActionRow).order_by(CleanupActionRow.recorded_at, CleanupActionRow.id)
        if run_id is not None:
            query = query.where(CleanupActionRow.run_id == run_id)
        if target is not None:
            query = query.where(CleanupActionRow.target == target)
        with self._session() as session:
            return [
                CleanupActionEntry(
                    run_id=row.run_id,
                    kind=row.kind,
                    target=row.target,
                    action=row.action,
                    status=row.status,
                    reason=row.reason,
                    detail=row.detail,
                    hourly_cost=row.hourly_cost,
                    estimated_saving=row.estimated_saving,
                    recorded_at=_aware(row.recorded_at),
                    started_at=_maybe_aware(row.started_at),
                    finished_at=_maybe_aware(row.finished_at),
                )
                for row in session.scalars(query)
            ]

    # -- mapping ----------------------------------------------------------

    def _stage_row(self, session: Session, name: str, lifecycle_id: str, stage: Stage) -> StageRow:
        row = session.scalar(
            select(StageRow).where(
                StageRow.sandbox == name,
                StageRow.lifecycle_id == lifecycle_id,
                StageRow.stage == stage.value,
            )
        )
        if row is None:
            row = StageRow(
                sandbox=name,
                lifecycle_id=lifecycle_id,
                stage=stage.value,
                status=StageStatus.pending.value,
                executions=0,
            )
            session.add(row)
        return row

    def _record(self, session: Session, row: SandboxRow) -> SandboxRecord:
        stage_rows = {
            r.stage: r
            for r in session.scalars(
                select(StageRow).where(StageRow.sandbox == row.name, StageRow.lifecycle_id == row.lifecycle_id)
            )
        }
        stages = [
            StageSummary(
                name=stage,
                status=StageStatus(stage_rows[stage.value].status)
                if stage.value in stage_rows
                else StageStatus.pending,
                executions=stage_rows[stage.value].executions if stage.value in stage_rows else 0,
            )
            for stage in STAGE_ORDER
        ]
        return SandboxRecord(
            name=row.name,
            kind=SandboxKind(row.kind),
            source_env=row.source_env,
            ticket=row.ticket,
            summary=row.summary,
            branch=row.branch,
            owner=row.owner,
            lifecycle_id=row.lifecycle_id,
            status=SandboxStatus(row.status),
            created_at=_aware(row.created_at),
            expires_at=_aware(row.expires_at),
            keep=bool(row.keep),
            forced_destroy=bool(row.forced_destroy),
            failed_stage=row.failed_stage,
            last_error=row.last_error,
            terraform_workdir=row.terraform_workdir,
            terraform_workspace=row.terraform_workspace,
            cluster_endpoint=row.cluster_endpoint,
            kubernetes_version=row.kubernetes_version,
            overrides=dict(row.overrides or {}),
            pull_request_url=row.pull_request_url,
            scale=row.scale,
            hourly_cost=row.hourly_cost,
            updated_at=_maybe_aware(row.updated_at),
            destroyed_at=_maybe_aware(row.destroyed_at),
            adopted=bool(row.adopted),
            stages=stages,
        )
