"""collector: job mode, deadline, priority, attempts, size estimate, cancellation; batch
poll backoff and provider cancellation

Revision ID: 0002_collector
Revises: 0001
Create Date: 2026-11-27 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_collector"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("requested_mode", sa.String(length=20), server_default="auto", nullable=False),
    )
    op.add_column("jobs", sa.Column("deadline", TIMESTAMP, nullable=True))
    op.add_column("jobs", sa.Column("priority", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("estimated_bytes", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("cancelled_at", TIMESTAMP, nullable=True))
    op.add_column("provider_batches", sa.Column("next_poll_at", TIMESTAMP, nullable=True))
    op.add_column(
        "provider_batches",
        sa.Column("polls", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("provider_batches", sa.Column("cancel_requested_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    op.drop_column("provider_batches", "cancel_requested_at")
    op.drop_column("provider_batches", "polls")
    op.drop_column("provider_batches", "next_poll_at")
    op.drop_column("jobs", "cancelled_at")
    op.drop_column("jobs", "estimated_bytes")
    op.drop_column("jobs", "attempts")
    op.drop_column("jobs", "priority")
    op.drop_column("jobs", "deadline")
    op.drop_column("jobs", "requested_mode")
