"""faults and fairness: the prices a batch was sent at, tenants' fair-share weights, and
the index a window's fair share is claimed through

``provider_batches.input_per_mtok`` / ``output_per_mtok`` / ``batch_discount`` are the
routed model's prices when the batch was claimed: a batch whose model has since left the
catalog is still polled, applied and priced. ``tenants.share_weight`` is a tenant's weight
in the weighted fair share of a window's claims; ``ix_jobs_window_tenant`` finds one
tenant's waiting jobs of a window in claiming order without passing another tenant's.

Revision ID: 0015_faults
Revises: 0006_api_security
Create Date: 2026-12-02 01:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_faults"
down_revision: str | None = "0006_api_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRICES = ("input_per_mtok", "output_per_mtok", "batch_discount")


def upgrade() -> None:
    for name in PRICES:
        op.add_column("provider_batches", sa.Column(name, sa.Numeric(18, 8), nullable=True))
    op.add_column(
        "tenants", sa.Column("share_weight", sa.Integer(), server_default="1", nullable=False)
    )
    op.create_index(
        "ix_jobs_window_tenant",
        "jobs",
        ["provider", "model", "mode", "tenant_id", "priority", "routed_at"],
        postgresql_where=sa.text("state = 'waiting'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_window_tenant", table_name="jobs")
    op.drop_column("tenants", "share_weight")
    for name in PRICES:
        op.drop_column("provider_batches", name)
