from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class OpenAIFile(IdMixin, CreatedAtMixin, Base):
    """A file of the OpenAI-compatible Files API: an uploaded batch input, or a batch's
    output or error file. Its bytes are in ``openai_file_parts``."""

    __tablename__ = "openai_files"
    __table_args__ = (Index("ix_openai_files_tenant_created", "tenant_id", "created_at", "id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(1000))
    bytes: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int]
