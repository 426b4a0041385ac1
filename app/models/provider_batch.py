from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Enum, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin, StrEnumText, utcnow
from app.models.job import JobMode


class BatchState(enum.StrEnum):
    pending = "pending"  # claimed locally; not yet accepted by the provider
    submitted = "submitted"  # accepted by the provider; polled until it ends
    completed = "completed"  # results applied
    failed = "failed"


class ProviderBatch(IdMixin, CreatedAtMixin, Base):
    """One call to a provider's batch endpoint, recorded before the call is made."""

    __tablename__ = "provider_batches"
    __table_args__ = (UniqueConstraint("provider", "external_id"),)

    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    mode: Mapped[JobMode] = mapped_column(StrEnumText(JobMode, 20))
    state: Mapped[BatchState] = mapped_column(
        Enum(BatchState, name="batch_state", values_callable=lambda e: [m.value for m in e]),
        default=BatchState.pending,
        index=True,
    )
    request_count: Mapped[int]
    external_id: Mapped[str | None] = mapped_column(String(200))
    input_file_id: Mapped[str | None] = mapped_column(String(200))
    output_file_id: Mapped[str | None] = mapped_column(String(200))
    error_file_id: Mapped[str | None] = mapped_column(String(200))
    provider_status: Mapped[str | None] = mapped_column(String(50))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # The poller's per-batch backoff: not polled again before next_poll_at.
    next_poll_at: Mapped[datetime | None]
    polls: Mapped[int] = mapped_column(default=0, server_default="0")
    # Submissions started (each counted and committed before the provider is called): after
    # the first, the provider may already hold the batch, so it is looked up before resending.
    submit_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    # Set once the provider was asked to cancel (every job of the batch was cancelled).
    cancel_requested_at: Mapped[datetime | None]
    # The model's prices when the batch was claimed: a model that left the catalog since
    # still has its open batches polled, applied and priced.
    input_per_mtok: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    output_per_mtok: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    batch_discount: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
