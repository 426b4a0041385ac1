from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Index, Numeric, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

# Money in the ledger: 12 decimal places, enough for any per-token price exactly.
MONEY = Numeric(24, 12)


class CostRecord(Base):
    """What one ended job cost and would have cost, written once when it ends (never updated:
    a later price change in the catalog does not rewrite history)."""

    __tablename__ = "cost_records"
    __table_args__ = (
        # spent_usd and the partial hours at the edges of a stats range.
        Index("ix_cost_records_tenant_ended_at", "tenant_id", "ended_at"),
        Index("ix_cost_records_ended_at", "ended_at"),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    group_id: Mapped[uuid.UUID | None]
    state: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str | None] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(String(200))
    mode: Mapped[str | None] = mapped_column(String(20))
    # provider, cache_exact, cache_semantic or coalesced for a completed job; None otherwise.
    answered_by: Mapped[str | None] = mapped_column(String(20))
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    # The counterfactual chain (app/ledger/pricing.py) and the savings by layer.
    naive_usd: Mapped[Decimal] = mapped_column(MONEY)
    routed_usd: Mapped[Decimal] = mapped_column(MONEY)
    batched_usd: Mapped[Decimal] = mapped_column(MONEY)
    prompt_cached_usd: Mapped[Decimal] = mapped_column(MONEY)
    actual_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_cache_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_coalescing_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_routing_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_batching_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_prompt_cache_usd: Mapped[Decimal] = mapped_column(MONEY)
    created_at: Mapped[datetime]  # the job's submission
    ended_at: Mapped[datetime]
    deadline: Mapped[datetime | None]
    # Submission to result available, for completed jobs.
    latency_seconds: Mapped[float | None]
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.now())
