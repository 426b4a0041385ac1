"""stats per group, quick at size: an all-time rollup per tenant, job group and mode

``cost_group_totals`` keeps ``cost_group_rollups``' sums over all time per tenant, group and
mode, with the first and last ``ended_at`` of the records they hold, so ``group_by=group``
reads one row per group and mode for every group a range holds wholly (the hourly group
rollup and the records only for groups the range cuts). It copies its columns from
``cost_group_rollups`` (``CREATE TABLE ... LIKE``), is filled with the sums of its rows and
takes the end times from the cost records.

Revision ID: 0022_stats
Revises: 0021_budgets
Create Date: 2026-12-03 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_stats"
down_revision: str | None = "0021_budgets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("tenant_id", "group_id", "mode")


def upgrade() -> None:
    rows = op.get_bind().execute(
        sa.text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'cost_group_rollups' ORDER BY ordinal_position"
        )
    )
    sums = [name for (name,) in rows if name not in (*KEY, "hour")]
    op.execute("CREATE TABLE cost_group_totals (LIKE cost_group_rollups)")
    op.execute("ALTER TABLE cost_group_totals DROP COLUMN hour")
    op.add_column(
        "cost_group_totals", sa.Column("first_ended_at", sa.DateTime(timezone=True), nullable=False)
    )
    op.add_column(
        "cost_group_totals", sa.Column("last_ended_at", sa.DateTime(timezone=True), nullable=False)
    )
    op.execute(
        f"INSERT INTO cost_group_totals ({', '.join(KEY)}, {', '.join(sums)}, "  # noqa: S608
        "first_ended_at, last_ended_at) "
        f"SELECT g.*, e.first_ended_at, e.last_ended_at FROM (SELECT {', '.join(KEY)}, "
        f"{', '.join(f'sum({s})' for s in sums)} FROM cost_group_rollups GROUP BY 1, 2, 3) AS g "
        "JOIN (SELECT tenant_id, group_id, coalesce(mode, '') AS mode, "
        "min(ended_at) AS first_ended_at, max(ended_at) AS last_ended_at FROM cost_records "
        "WHERE group_id IS NOT NULL GROUP BY 1, 2, 3) AS e USING (tenant_id, group_id, mode)"
    )
    op.create_primary_key("pk_cost_group_totals", "cost_group_totals", list(KEY))
    op.create_foreign_key(
        "fk_cost_group_totals_tenant_id_tenants",
        "cost_group_totals",
        "tenants",
        ["tenant_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(
        "ix_cost_group_totals_tenant_last",
        "cost_group_totals",
        ["tenant_id", "last_ended_at"],
        postgresql_include=["first_ended_at", "group_id", "mode"],
    )
    op.execute("ANALYZE cost_group_totals")


def downgrade() -> None:
    op.drop_table("cost_group_totals")
