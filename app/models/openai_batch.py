from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin, StrEnumText


class OpenAIBatchStatus(enum.StrEnum):
    """OpenAI's batch statuses."""

    validating = "validating"
    failed = "failed"
    in_progress = "in_progress"
    finalizing = "finalizing"
    completed = "completed"
    expired = "expired"
    cancelling = "cancelling"
    cancelled = "cancelled"


class OpenAIBatch(IdMixin, CreatedAtMixin, Base):
    """A batch of the OpenAI-compatible Batch API: its input file's lines became the jobs of
    one group (``group_id``); its output and error files are written when they have ended."""

    __tablename__ = "openai_batches"
    __table_args__ = (Index("ix_openai_batches_tenant_created", "tenant_id", "created_at", "id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[OpenAIBatchStatus] = mapped_column(StrEnumText(OpenAIBatchStatus, 20))
    endpoint: Mapped[str] = mapped_column(String(100))
    completion_window: Mapped[str] = mapped_column(String(20))
    batch_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    input_file_id: Mapped[uuid.UUID]
    output_file_id: Mapped[uuid.UUID | None]
    error_file_id: Mapped[uuid.UUID | None]
    group_id: Mapped[uuid.UUID | None]
    # OpenAI's ``errors.data`` of a batch that failed validation.
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # Lines refused before they became jobs (they are in the error file).
    rejected: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    completed_count: Mapped[int] = mapped_column(default=0)
    failed_count: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime]
    in_progress_at: Mapped[datetime | None]
    finalizing_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]
    cancelling_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # When a read last sent a validating batch to a worker again (its message was lost).
    redriven_at: Mapped[datetime | None]
