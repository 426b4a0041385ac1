"""router: per-tenant routing settings, a job's quality target and its routing record

``tenants`` gets ``routing_strategy`` (``rules`` / ``learned``; NULL means the default,
``rules``) and ``quality_target`` (NULL means the default, 0.95). ``jobs`` gets the
``quality_target`` a job overrides its tenant's with, and ``routing``: why it was routed
(strategy, score, threshold, candidates, expected quality and cost). Keys that could change
the cache settings (``cache:write``) get the new ``routing:write`` scope: the tenant's
settings keys keep changing every setting they could see.

Revision ID: 0018_router
Revises: 0019_coalesce
Create Date: 2026-12-02 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018_router"
down_revision: str | None = "0019_coalesce"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("routing_strategy", sa.String(20)))
    op.add_column("tenants", sa.Column("quality_target", sa.Float()))
    op.add_column("jobs", sa.Column("quality_target", sa.Float()))
    op.add_column("jobs", sa.Column("routing", postgresql.JSONB()))
    op.execute(
        "UPDATE api_keys SET scopes = array_append(scopes, 'routing:write') "
        "WHERE 'cache:write' = ANY(scopes) AND NOT 'routing:write' = ANY(scopes)"
    )


def downgrade() -> None:
    op.execute("UPDATE api_keys SET scopes = array_remove(scopes, 'routing:write')")
    op.drop_column("jobs", "routing")
    op.drop_column("jobs", "quality_target")
    op.drop_column("tenants", "quality_target")
    op.drop_column("tenants", "routing_strategy")
