"""router2: a job's reserved cost, so budgets count work in flight

``jobs.reserved_usd`` is the expected cost routing recorded for the job (its routing
record's ``expected_cost_usd``; at submission, for a tenant with a budget, the rules route's
estimate of a job left for ingest); it is cleared when the actual cost lands. Budgets add
the reserved cost of the tenant's jobs in flight to the ledger's spend, read through a
partial index that holds only jobs in flight with a reservation.

Revision ID: 0025_router2
Revises: 0023_cache
Create Date: 2026-12-04 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025_router2"
down_revision: str | None = "0023_cache"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_FLIGHT = "reserved_usd IS NOT NULL AND state IN ('queued', 'waiting', 'batched', 'submitted')"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("reserved_usd", sa.Numeric(24, 12), nullable=True))
    op.create_index(
        "ix_jobs_tenant_reserved",
        "jobs",
        ["tenant_id"],
        postgresql_where=sa.text(IN_FLIGHT),
        postgresql_include=["reserved_usd"],
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_reserved", table_name="jobs")
    op.drop_column("jobs", "reserved_usd")
