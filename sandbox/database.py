"""The inventory database, as every store on it opens and uses it.

The sandbox inventory (:mod:`sandbox.inventory`) and the performance runs
(:mod:`sandbox.perf.store`) share one database. Both open it the same way
(SQLite's parent directory made, its busy timeout set), bring it to the newest
schema once per process, and turn driver errors into the product's errors: a
lock or an unreachable server is retryable, everything else permanent. Each
store names its own error classes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from sandbox import migrations
from sandbox.errors import PermanentError, RetryableError
from sandbox.hardening import private_file
from sandbox.redaction import register_url_credentials

#: Words in a driver's message that mean "try again later" (a lock, a database down or restarting).
BUSY_MARKS = ("locked", "could not connect", "connection failed", "connection refused", "timeout", "timed out")

#: Databases (by URL) this process has already brought to the newest schema.
_MIGRATED: set[str] = set()
_MIGRATED_LOCK = threading.Lock()


def redacted_url(url: str) -> str:
    """``url`` without its password, for messages (the password is registered for every redaction too)."""
    register_url_credentials(url)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Several processes (CLI, Prefect workers) share one SQLite file: wait for
    # locks instead of failing at once, and enforce foreign keys.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _private_sqlite_file(path: Path) -> None:
    """Create a SQLite database file (and its directory) private to the owner, or make an existing one so.

    The inventory names every sandbox, its branch and its failures: ``0600`` (in a
    new directory ``0700``) whatever the umask, and files an earlier version made
    readable (the database, its journal and WAL) are tightened. An existing
    directory is left as it is: it may be anybody's (``/tmp``). SQLite opens an
    empty file as a new database.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in ("-journal", "-wal", "-shm"))):
        private_file(file)


def open_engine(url: str, error: type[PermanentError]) -> Engine:
    """An engine on ``url`` (a SQLite file's directory is created).

    Raises:
        error: Unusable URL, missing driver, or a directory that cannot be made.
    """
    shown = redacted_url(url)
    try:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            _private_sqlite_file(Path(url.removeprefix("sqlite:///")))
        engine = create_engine(url, future=True)
    except OSError as exc:
        raise error(f"cannot open inventory {shown}: {exc.strerror}") from None
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise error(f"cannot open inventory {shown}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


@contextmanager
def database_errors(
    busy: type[RetryableError], error: type[PermanentError], *, keep: tuple[type[Exception], ...] = ()
) -> Iterator[None]:
    """Turn SQLAlchemy's errors into ``busy`` (a lock, a server away) or ``error``; ``keep`` passes through."""
    try:
        yield
    except keep:
        raise
    except OperationalError as exc:
        text = str(exc.orig) if exc.orig else str(exc)
        first = text.splitlines()[0] if text else type(exc).__name__
        if any(mark in text.lower() for mark in BUSY_MARKS):
            raise busy(f"inventory busy: {first}") from None
        raise error(f"inventory error: {first}") from None
    except SQLAlchemyError as exc:
        raise error(f"inventory error: {str(exc).splitlines()[0]}") from None


def migrate_once(engine: Engine, url: str, busy: type[RetryableError], error: type[PermanentError]) -> None:
    """Bring the database to the newest schema, once per process and database.

    Raises:
        error: The database is at a revision this fleet-sandbox does not know.
    """
    with _MIGRATED_LOCK:
        if url in _MIGRATED:
            return
    with database_errors(busy, error), engine.connect() as connection:
        current = migrations.current_revisions(connection)
        connection.rollback()
        unknown = current - migrations.known_revisions()
        if unknown:
            raise error(
                f"inventory {redacted_url(url)} is at schema revision {', '.join(sorted(unknown))}, which this "
                "fleet-sandbox does not know (migrated by a newer version?); upgrade fleet-sandbox"
            )
        if current != migrations.head_revisions():
            migrations.upgrade_to_head(connection)
    if make_url(url).database not in (None, "", ":memory:"):  # each in-memory database is new
        with _MIGRATED_LOCK:
            _MIGRATED.add(url)
