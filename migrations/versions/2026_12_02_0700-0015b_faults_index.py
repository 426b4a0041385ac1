"""faults and fairness: the window's fair-share index on every database, and ingest's

``ix_jobs_window_tenant`` was added to 0015_faults after that migration had landed, so a
database migrated in between lacks it: it is created here if it does not exist.
``ix_jobs_queued_tenant`` finds the tenants with queued jobs (a loose index scan) and each
one's oldest queued jobs, for ingest's weighted fair share across tenants.

Revision ID: 0015b_faults_index
Revises: 0017_frontdoor_api
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015b_faults_index"
down_revision: str | None = "0017_frontdoor_api"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_window_tenant",
        "jobs",
        ["provider", "model", "mode", "tenant_id", "priority", "routed_at"],
        postgresql_where=sa.text("state = 'waiting'"),
        if_not_exists=True,
    )
    op.create_index(
        "ix_jobs_queued_tenant",
        "jobs",
        ["tenant_id", "created_at"],
        postgresql_where=sa.text("state = 'queued'"),
        if_not_exists=True,
    )


def downgrade() -> None:
    # ix_jobs_window_tenant stays: 0015_faults' downgrade drops it.
    op.drop_index("ix_jobs_queued_tenant", table_name="jobs")
