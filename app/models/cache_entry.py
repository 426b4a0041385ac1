from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class CacheEntry(IdMixin, CreatedAtMixin, Base):
    """A stored answer, keyed by a hash of the tenant's scope and the normalised request."""

    __tablename__ = "cache_entries"
    __table_args__ = (UniqueConstraint("tenant_id", "cache_key"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    cache_key: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(Text)
    source_job_id: Mapped[uuid.UUID]
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    hit_count: Mapped[int] = mapped_column(default=0)
