"""The inventory: sandboxes, their stage runs, and cleanup actions.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Databases created before migrations existed (``create_all`` of the first
inventory: ``sandboxes`` and ``stage_runs`` present, no ``alembic_version``) are
adopted: the columns and tables they lack are added, their rows are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _moment(name: str, *, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _flag(name: str) -> sa.Column:
    return sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())


def _sandbox_columns_added_by_0001() -> list[sa.Column]:
    """Columns the first, pre-migration inventory did not have."""
    return [
        sa.Column("scale", sa.String(64), nullable=True),
        sa.Column("hourly_cost", sa.Float(), nullable=True),
        _moment("updated_at"),
        _moment("destroyed_at"),
        _flag("adopted"),
    ]


def _create_sandboxes() -> None:
    op.create_table(
        "sandboxes",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_env", sa.String(64), nullable=False),
        sa.Column("ticket", sa.String(128), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("branch", sa.String(128), nullable=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("lifecycle_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        _moment("created_at", nullable=False),
        _moment("expires_at", nullable=False),
        _flag("keep"),
        _flag("forced_destroy"),
        sa.Column("failed_stage", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("terraform_workdir", sa.Text(), nullable=True),
        sa.Column("terraform_workspace", sa.String(128), nullable=True),
        sa.Column("cluster_endpoint", sa.Text(), nullable=True),
        sa.Column("kubernetes_version", sa.String(32), nullable=True),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("pull_request_url", sa.Text(), nullable=True),
        *_sandbox_columns_added_by_0001(),
    )
    op.create_index("ix_sandboxes_expires_at", "sandboxes", ["expires_at"])


def _create_stage_runs() -> None:
    op.create_table(
        "stage_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("sandbox", sa.String(64), sa.ForeignKey("sandboxes.name", ondelete="CASCADE"), nullable=False),
        sa.Column("lifecycle_id", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("executions", sa.Integer(), nullable=False, server_default="0"),
        _moment("started_at"),
        _moment("finished_at"),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("sandbox", "lifecycle_id", "stage"),
    )


def _create_cleanup_actions() -> None:
    op.create_table(
        "cleanup_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("hourly_cost", sa.Float(), nullable=True),
        sa.Column("estimated_saving", sa.Float(), nullable=True),
        _moment("recorded_at", nullable=False),
        _moment("started_at"),
        _moment("finished_at"),
    )
    op.create_index("ix_cleanup_actions_run_id", "cleanup_actions", ["run_id"])
    op.create_index("ix_cleanup_actions_target", "cleanup_actions", ["target"])


def upgrade() -> None:
    """Create the inventory, or complete one made before migrations existed."""
    if context.is_offline_mode():
        existing: set[str] = set()
    else:
        existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "sandboxes" not in existing:
        _create_sandboxes()
    else:
        have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("sandboxes")}
        for column in _sandbox_columns_added_by_0001():
            if column.name not in have:
                op.add_column("sandboxes", column)
        op.create_index("ix_sandboxes_expires_at", "sandboxes", ["expires_at"])
    if "stage_runs" not in existing:
        _create_stage_runs()
    if "cleanup_actions" not in existing:
        _create_cleanup_actions()


def downgrade() -> None:
    """Drop the inventory."""
    op.drop_table("cleanup_actions")
    op.drop_table("stage_runs")
    op.drop_table("sandboxes")
