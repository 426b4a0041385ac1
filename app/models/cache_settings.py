from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class CacheSettings(Base):
    """A tenant's own cache settings; NULL fields fall back to the service defaults."""

    __tablename__ = "cache_settings"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    semantic_enabled: Mapped[bool] = mapped_column(default=True)
    prompt_threshold: Mapped[float | None]
    document_threshold: Mapped[float | None]
    ttl_seconds: Mapped[int | None]
    max_entries: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
