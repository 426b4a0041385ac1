"""cache: the near-duplicate GIN index without a pending list

With ``fastupdate`` on (Postgres's default) a GIN index queues new entries in a pending list
of up to ``gin_pending_list_limit`` (4 MB, about 4,000 documents' band keys) that every scan
reads through, so while answers are being written each probe of ingest's near-duplicate
query (one per band key, 10,500 for a chunk of 250 documents) walked thousands of pending
entries. Off, each entry's keys go into the index as it is written.

Revision ID: 0023_cache
Revises: 0022_stats
Create Date: 2026-12-03 07:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023_cache"
down_revision: str | None = "0022_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER INDEX ix_cache_entries_lsh_bands SET (fastupdate = off)")
    # what is pending already goes into the index now, not at the next vacuum
    op.execute("SELECT gin_clean_pending_list('ix_cache_entries_lsh_bands'::regclass)")


def downgrade() -> None:
    op.execute("ALTER INDEX ix_cache_entries_lsh_bands RESET (fastupdate)")
