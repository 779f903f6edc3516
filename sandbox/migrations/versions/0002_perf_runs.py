"""Performance runs and their baselines (``sandbox.perf.store``).

Revision ID: 0002_perf_runs
Revises: 0001
Create Date: 2026-11-28

One row per run of the performance_sandbox flow: scenario, source environment,
sandbox, settings, metrics, the comparison with its baseline, and whether it
was accepted as the baseline (``sandbox perf accept RUN``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_perf_runs"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``perf_runs``."""
    op.create_table(
        "perf_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("scenario", sa.String(128), nullable=False),
        sa.Column("source_env", sa.String(64), nullable=False),
        sa.Column("sandbox", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("comparison", sa.JSON(), nullable=True),
        sa.Column("baseline_run_id", sa.String(64), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("chart_path", sa.Text(), nullable=True),
    )
    op.create_index("ix_perf_runs_flow_run_id", "perf_runs", ["flow_run_id"])
    # The baseline lookup: accepted runs of one scenario and source, newest acceptance first.
    op.create_index("ix_perf_runs_baseline", "perf_runs", ["scenario", "source_env", "accepted", "accepted_at"])


def downgrade() -> None:
    """Drop ``perf_runs``."""
    op.drop_index("ix_perf_runs_baseline", table_name="perf_runs")
    op.drop_index("ix_perf_runs_flow_run_id", table_name="perf_runs")
    op.drop_table("perf_runs")
