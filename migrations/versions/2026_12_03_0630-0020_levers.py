"""levers: deadline escalation

``ix_jobs_batch_deadline`` finds batch-mode jobs in a batch that has not ended, by provider
and deadline, for the sweeper's escalation step; ``superseded_lines`` records the late
answers of escalated jobs (what the provider charged for an answer that was not used).

Revision ID: 0020_levers
Revises: 0018_router
Create Date: 2026-12-03 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_levers"
down_revision: str | None = "0018_router"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(24, 12)


def upgrade() -> None:
    op.create_index(
        "ix_jobs_batch_deadline",
        "jobs",
        ["provider", "deadline"],
        postgresql_where=sa.text(
            "deadline IS NOT NULL AND mode = 'batch' AND state IN ('batched', 'submitted')"
        ),
    )
    op.create_table(
        "superseded_lines",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("provider_batch_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(50), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", MONEY, nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_superseded_lines_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "provider_batch_id", name="pk_superseded_lines"),
    )


def downgrade() -> None:
    op.drop_table("superseded_lines")
    op.drop_index("ix_jobs_batch_deadline", table_name="jobs")
