"""Alembic migrations of the sandbox inventory, packaged with the core.

:class:`sandbox.inventory.Inventory` runs :func:`upgrade_to_head` whenever it
opens a database, so no ``alembic.ini`` is needed at run time and SQLite files
and PostgreSQL databases alike are brought to the newest schema. Revisions live
in ``versions/``; the first is ``0001``.

Adding a revision: write ``versions/<id>_<what>.py`` with ``revision = "<id>"``
and ``down_revision`` naming the current head (``script.py.mako`` beside this
file is the template ``alembic revision`` would use). Keep every revision
working on SQLite and PostgreSQL.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent

#: Arbitrary constant for PostgreSQL's advisory lock serialising migrations
#: (two processes opening a new team database at once).
_PG_LOCK_KEY = 0x666C_6565_7462_6F78


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for this package's migrations, without any ``alembic.ini``.

    Args:
        connection: The connection ``env.py`` migrates (passed in ``attributes``).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def script_directory() -> ScriptDirectory:
    """The revisions shipped with this version of the product (loaded once per process)."""
    return ScriptDirectory.from_config(alembic_config())


def head_revisions() -> frozenset[str]:
    """The head revision(s) of the shipped migrations."""
    return frozenset(script_directory().get_heads())


def known_revisions() -> frozenset[str]:
    """Every revision id the shipped migrations contain."""
    return frozenset(rev.revision for rev in script_directory().walk_revisions())


def current_revisions(connection: Connection) -> frozenset[str]:
    """The revision(s) the database is at (empty: never migrated)."""
    return frozenset(MigrationContext.configure(connection).get_current_heads())


def upgrade_to_head(connection: Connection) -> None:
    """Upgrade the database behind ``connection`` to the newest schema, in one transaction.

    Concurrent callers are serialised: SQLite by ``BEGIN IMMEDIATE`` (the second
    waits on the file lock, then finds the work done), PostgreSQL by a
    transaction-scoped advisory lock. ``connection`` must not be in a transaction.
    A database already at the newest revision is left as it is, without a lock.

    Databases made before migrations existed (tables present, no
    ``alembic_version``) are adopted by revision ``0001``, which adds what they
    lack instead of creating what they have.
    """
    up_to_date = current_revisions(connection) == head_revisions()
    connection.rollback()
    if up_to_date:  # the usual case: no lock taken
        return
    dialect = connection.dialect.name
    if dialect == "sqlite":
        # pysqlite would only open a transaction before DML; take the write lock now.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.begin()
        if dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    try:
        command.upgrade(alembic_config(connection), "head")
    except BaseException:
        connection.rollback()
        raise
    connection.commit()
