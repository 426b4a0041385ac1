from __future__ import annotations

import uuid
from datetime import datetime

from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin

# Width of every stored embedding (all-MiniLM-L6-v2; the openai backend asks for this size).
EMBEDDING_DIMENSIONS = 384


class CacheEntry(IdMixin, CreatedAtMixin, Base):
    """A stored answer, keyed by a hash of the tenant's scope and the normalised request.

        ``scope_key`` hashes the scope without the text (tier, instruction, system prompt,
        generation parameters); semantic lookups only compare entries of the same tenant and
        scope. ``request_text`` is kept so a semantic candidate can be verified against the full
        request (documents are longer than what the embedding model reads). Prompts are found by
    ``embedding`` (HNSW), documents by ``lsh_bands`` (GIN, near-duplicate candidates).
    """

    __tablename__ = "cache_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "cache_key"),
        # The columns of an exact search in the index (app/cache/sizes.py): a scope's vectors
        # lie together in its leaf pages, read by an index-only scan, not one heap page per
        # entry scattered over the table (migration 0027_cache_scope).
        Index(
            "ix_cache_entries_tenant_scope",
            "tenant_id",
            "scope_key",
            postgresql_include=["id", "created_at", "embedding"],
        ),
        Index(
            "ix_cache_entries_embedding",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": 16, "ef_construction": 200},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        Index(
            "ix_cache_entries_lsh_bands",
            "lsh_bands",
            postgresql_using="gin",
            postgresql_where=text("lsh_bands IS NOT NULL"),
            # no pending list: every scan would read through it (migration 0023_cache)
            postgresql_with={"fastupdate": "off"},
        ),
        # Room on each page for a hit's new row version (hit_count, last_hit_at), so the
        # update stays on its page and touches no index (migration 0028_ingest2).
        {"postgresql_with": {"fillfactor": 70}},
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    cache_key: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(Text)
    source_job_id: Mapped[uuid.UUID]
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    hit_count: Mapped[int] = mapped_column(default=0)
    # Semantic layer; NULL for entries written without an embedding (exact match only).
    scope_key: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(10))  # "prompt" | "document"
    request_text: Mapped[str | None] = mapped_column(Text)
    embedding: Mapped[list[float] | None] = mapped_column(Vector(EMBEDDING_DIMENSIONS))
    # Documents: the LSH band keys of the text's MinHash signature (app/cache/neardup.py).
    lsh_bands: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger))
    last_hit_at: Mapped[datetime | None]
