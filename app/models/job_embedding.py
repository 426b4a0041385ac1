from __future__ import annotations

import uuid

from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin
from app.models.cache_entry import EMBEDDING_DIMENSIONS


class JobEmbedding(CreatedAtMixin, Base):
    """The embedding computed for a job at ingest, kept until the poller writes its answer to
        the cache, so the vector (a prompt's) or the band keys (a document's) are computed once for
    both the lookup and the write."""

    __tablename__ = "job_embeddings"
    __table_args__ = (
        # in-flight near-duplicates are probed by band key (migration 0026_ingest)
        Index(
            "ix_job_embeddings_lsh_bands",
            "lsh_bands",
            postgresql_using="gin",
            postgresql_where=text("lsh_bands IS NOT NULL"),
            postgresql_with={"fastupdate": "off"},
        ),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    scope_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(10))
    # A prompt's vector; a document has none (it is found by its band keys).
    embedding: Mapped[list[float] | None] = mapped_column(Vector(EMBEDDING_DIMENSIONS))
    lsh_bands: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))
