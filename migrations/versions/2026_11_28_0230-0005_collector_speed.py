"""partial indexes on jobs, and submission attempts on provider batches

Partial indexes: index entries only for the row versions that are looked up.

Every state change writes a new row version and an entry in every index of the table. The
window index is only read for waiting jobs, the sweeper's only for jobs that have not ended,
and the batch and group indexes never for NULL; making them partial cuts the index writes of
a job's life by about a quarter.

``provider_batches.submit_attempts`` is counted (and committed) before each submission, so
the first one can skip looking the batch up at the provider: no earlier attempt reached it.

Revision ID: 0005_collector_speed
Revises: 0004_delivery
Create Date: 2026-11-28 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_collector_speed"
down_revision: str | None = "0004_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_STATES = "state IN ('queued', 'waiting', 'batched', 'submitted')"


def upgrade() -> None:
    op.add_column(
        "provider_batches",
        sa.Column("submit_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.drop_index("ix_jobs_window", table_name="jobs")
    op.drop_index("ix_jobs_state_updated_at", table_name="jobs")
    op.drop_index("ix_jobs_provider_batch_id", table_name="jobs")
    op.drop_index("ix_jobs_group_id", table_name="jobs")
    op.create_index(
        "ix_jobs_window",
        "jobs",
        ["provider", "model", "mode", "priority", "routed_at"],
        postgresql_where=sa.text("state = 'waiting'"),
    )
    op.create_index(
        "ix_jobs_open_state_updated_at",
        "jobs",
        ["state", "updated_at"],
        postgresql_where=sa.text(OPEN_STATES),
    )
    op.create_index(
        "ix_jobs_provider_batch_id",
        "jobs",
        ["provider_batch_id"],
        postgresql_where=sa.text("provider_batch_id IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_group_id", "jobs", ["group_id"], postgresql_where=sa.text("group_id IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_column("provider_batches", "submit_attempts")
    op.drop_index("ix_jobs_group_id", table_name="jobs")
    op.drop_index("ix_jobs_provider_batch_id", table_name="jobs")
    op.drop_index("ix_jobs_open_state_updated_at", table_name="jobs")
    op.drop_index("ix_jobs_window", table_name="jobs")
    op.create_index("ix_jobs_group_id", "jobs", ["group_id"])
    op.create_index("ix_jobs_provider_batch_id", "jobs", ["provider_batch_id"])
    op.create_index("ix_jobs_state_updated_at", "jobs", ["state", "updated_at"])
    op.create_index("ix_jobs_window", "jobs", ["state", "provider", "model", "routed_at"])
