"""coalesce: identical live requests are sent once

``jobs.coalesce_leader`` marks the job sent for every identical request of its tenant, and
the unique partial index ``uq_jobs_live_leader`` allows one such leader per (tenant, exact
cache key) while it is waiting, batched or at the provider: two ingest processes that elect
a leader for the same key at once cannot both win. ``jobs.coalesced_with`` is the leader a
follower waits on and, once it completed, the job whose result it took;
``ix_jobs_coalesced_with`` finds the waiting followers of leaders that ended. Jobs stored
before have no leader flag, so the unique index builds on any existing data.

Revision ID: 0019_coalesce
Revises: 0015b_faults_index
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_coalesce"
down_revision: str | None = "0015b_faults_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("coalesce_leader", sa.Boolean(), server_default="false", nullable=False),
    )
    op.add_column("jobs", sa.Column("coalesced_with", sa.Uuid(), nullable=True))
    op.create_index(
        "uq_jobs_live_leader",
        "jobs",
        ["tenant_id", "cache_key"],
        unique=True,
        postgresql_where=sa.text(
            "coalesce_leader AND state IN ('waiting', 'batched', 'submitted')"
        ),
    )
    op.create_index(
        "ix_jobs_coalesced_with",
        "jobs",
        ["coalesced_with"],
        postgresql_where=sa.text("coalesced_with IS NOT NULL AND state = 'waiting'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_coalesced_with", table_name="jobs")
    op.drop_index("uq_jobs_live_leader", table_name="jobs")
    op.drop_column("jobs", "coalesced_with")
    op.drop_column("jobs", "coalesce_leader")
