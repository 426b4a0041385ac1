from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base
from app.models.cost_record import MONEY


class SupersededLine(Base):
    """A provider's answer that came too late to be used: the job it answered was escalated
    before its deadline (sent again on a faster path) and completed from that answer. The
    provider still charges for the late line; this is what it cost, written once per
    (job, batch) and never counted as the job's cost (``cost_records`` has that)."""

    __tablename__ = "superseded_lines"

    job_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    provider_batch_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    # What the provider charges for the line (the batch's prices and discount).
    cost_usd: Mapped[Decimal] = mapped_column(MONEY)
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())
