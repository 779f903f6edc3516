"""Alembic environment of the inventory migrations.

Normally run by :func:`sandbox.migrations.upgrade_to_head`, which passes an open
connection in ``config.attributes["connection"]`` (and holds the transaction).
For a DBA who wants the SQL or runs Alembic by hand, a URL works too: the
``sqlalchemy.url`` option or the ``FLEET_SANDBOX_INVENTORY_URL`` environment
variable, online or with ``--sql`` (offline).
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("FLEET_SANDBOX_INVENTORY_URL")
    if not url:
        raise RuntimeError("no database: set sqlalchemy.url or FLEET_SANDBOX_INVENTORY_URL")
    return url


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    """Run the migrations Alembic asked for."""
    if context.is_offline_mode():
        context.configure(url=_url(), literal_binds=True, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(_url(), poolclass=NullPool)
    with engine.connect() as own:
        _migrate(own)
        own.commit()
    engine.dispose()


run()
