"""scoped, expiring API keys; per-tenant limits; the request hash of idempotent jobs

``api_keys`` gets a name, scopes, ``expires_at`` and ``last_used_at``; keys made before
this revision get every tenant scope (what they could do until now). ``tenants`` gets its
overrides of the request, job and unfinished-job limits. ``jobs.request_hash`` lets a
reused idempotency key with another payload be refused.

Revision ID: 0006_api_security
Revises: 0005_collector_speed
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_api_security"
down_revision: str | None = "0005_collector_speed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_SCOPES = "{cache:write,jobs:read,jobs:write,keys:write,stats:read,webhooks:write}"


def upgrade() -> None:
    op.add_column(
        "api_keys", sa.Column("name", sa.String(200), server_default="default", nullable=False)
    )
    op.add_column(
        "api_keys",
        sa.Column(
            "scopes",
            postgresql.ARRAY(sa.String(32)),
            server_default=sa.text(f"'{TENANT_SCOPES}'::varchar(32)[]"),
            nullable=False,
        ),
    )
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True)))
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True)))
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    for column in ("requests_per_minute", "jobs_per_minute", "max_unfinished_jobs"):
        op.add_column("tenants", sa.Column(column, sa.Integer()))
    op.add_column("jobs", sa.Column("request_hash", sa.String(64)))


def downgrade() -> None:
    op.drop_column("jobs", "request_hash")
    for column in ("requests_per_minute", "jobs_per_minute", "max_unfinished_jobs"):
        op.drop_column("tenants", column)
    op.drop_index("ix_api_keys_tenant_id", table_name="api_keys")
    for column in ("last_used_at", "expires_at", "scopes", "name"):
        op.drop_column("api_keys", column)
