"""cache: a scope's vectors in the (tenant_id, scope_key) index

A scope smaller than ``cache_exact_below`` is searched exactly (app/cache/sizes.py). Read
through the heap that costs one page per entry, scattered over the whole table, and those
pages drop out of Postgres's buffers as other tenants are served: 34 ms for a 5,000-entry
scope of a 500,000-entry table read from the OS cache (docs/benchmarks.md). With ``id``,
``created_at`` and the vector included in the index, the search is an index-only scan of
the scope's own leaf pages (about a fifth as many pages, side by side).

Revision ID: 0027_cache_scope
Revises: 0026_ingest
Create Date: 2026-12-04 20:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027_cache_scope"
down_revision: str | None = "0026_ingest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_cache_entries_tenant_scope", table_name="cache_entries")
    op.create_index(
        "ix_cache_entries_tenant_scope",
        "cache_entries",
        ["tenant_id", "scope_key"],
        postgresql_include=["id", "created_at", "embedding"],
    )


def downgrade() -> None:
    op.drop_index("ix_cache_entries_tenant_scope", table_name="cache_entries")
    op.create_index("ix_cache_entries_tenant_scope", "cache_entries", ["tenant_id", "scope_key"])
