"""cache speed: the document near-duplicate index (MinHash LSH band keys, GIN)

Documents are found by the band keys of their shingles' MinHash signature
(``app/cache/neardup.py``), not by an embedding: ``cache_entries.lsh_bands`` with a GIN index
for the ``&&`` overlap query, and ``job_embeddings.lsh_bands`` to carry the keys computed at
ingest to the entry the poller writes. A document's row in ``job_embeddings`` has no vector.

Revision ID: 0014_cache_speed
Revises: 0015_faults
Create Date: 2026-12-02 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014_cache_speed"
down_revision: str | None = "0015_faults"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "cache_entries", sa.Column("lsh_bands", postgresql.ARRAY(sa.BigInteger()), nullable=True)
    )
    op.create_index(
        "ix_cache_entries_lsh_bands",
        "cache_entries",
        ["lsh_bands"],
        postgresql_using="gin",
        postgresql_where=sa.text("lsh_bands IS NOT NULL"),
    )
    op.add_column(
        "job_embeddings", sa.Column("lsh_bands", postgresql.ARRAY(sa.BigInteger()), nullable=True)
    )
    op.alter_column("job_embeddings", "embedding", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM job_embeddings WHERE embedding IS NULL")
    op.alter_column("job_embeddings", "embedding", nullable=False)
    op.drop_column("job_embeddings", "lsh_bands")
    op.drop_index("ix_cache_entries_lsh_bands", table_name="cache_entries")
    op.drop_column("cache_entries", "lsh_bands")
