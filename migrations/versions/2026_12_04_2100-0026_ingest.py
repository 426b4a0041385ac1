"""ingest: a GIN index on the band keys of jobs in flight

The in-flight near-duplicate search (``app/cache/inflight.py``) looked for live leaders
sharing a band key with a chunk's documents by reading every live leader's saved band keys
of the tenant and comparing each array with the chunk's (about 10,000 keys): the longer the
backlog in flight, the slower each chunk. With this index each distinct key is probed on its
own (``_JOB_BAND_PROBE`` in ``app/cache/job_embeddings.py``), as the cache's entries are. No
pending list, as for ``ix_cache_entries_lsh_bands`` (migration 0023_cache): every probe would
read through it.

Revision ID: 0026_ingest
Revises: 0025_router2
Create Date: 2026-12-04 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026_ingest"
down_revision: str | None = "0025_router2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_job_embeddings_lsh_bands",
        "job_embeddings",
        ["lsh_bands"],
        postgresql_using="gin",
        postgresql_where=sa.text("lsh_bands IS NOT NULL"),
        postgresql_with={"fastupdate": "off"},
    )


def downgrade() -> None:
    op.drop_index("ix_job_embeddings_lsh_bands", table_name="job_embeddings")
