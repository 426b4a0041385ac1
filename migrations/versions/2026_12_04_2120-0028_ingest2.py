"""cache: room on each page of cache_entries for a hit's new row version

An exact hit adds to its entry's ``hit_count`` and sets ``last_hit_at``, neither indexed. On a
full page (the default fill factor, 100) the new version of the row goes to another page, and
every index of the table gets an entry for it: the GIN of 42 band keys without a pending
list, the scope index that carries the vector, the unique key and the primary key. Measured
on a 1,000-job resubmission of documents, half the hit updates were of that kind and the
UPDATE was the costliest statement of an exact-hit chunk (docs/benchmarks.md "Ingest").
With a page kept 30% free the new version stays on its page as a heap-only tuple, no index
touched. Pages written before keep their fill until rewritten.

Revision ID: 0028_ingest2
Revises: 0027_cache_scope
Create Date: 2026-12-04 21:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0028_ingest2"
down_revision: str | None = "0027_cache_scope"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE cache_entries SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE cache_entries RESET (fillfactor)")
