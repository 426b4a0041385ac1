"""budgets: a tenant's daily and monthly budgets in USD and its budget policy

``tenants`` gets ``daily_budget_usd`` and ``monthly_budget_usd`` (NULL: no budget) and
``budget_policy`` (``reject`` / ``downgrade``; NULL means the default, ``reject``).

Revision ID: 0021_budgets
Revises: 0020_levers
Create Date: 2026-12-03 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_budgets"
down_revision: str | None = "0020_levers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("daily_budget_usd", sa.Numeric(24, 12)))
    op.add_column("tenants", sa.Column("monthly_budget_usd", sa.Numeric(24, 12)))
    op.add_column("tenants", sa.Column("budget_policy", sa.String(20)))


def downgrade() -> None:
    op.drop_column("tenants", "budget_policy")
    op.drop_column("tenants", "monthly_budget_usd")
    op.drop_column("tenants", "daily_budget_usd")
