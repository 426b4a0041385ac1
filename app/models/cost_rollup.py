from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Numeric, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

MONEY = Numeric(24, 12)
# The latency histogram's buckets (app/ledger/histogram.py keeps the bounds).
LATENCY_BUCKETS = 75
LATENCY_COLUMNS = tuple(f"lpr_{i:02d}" for i in range(LATENCY_BUCKETS))
# Rollup keys have no NULLs (a primary key): no model or mode is '', no group the nil UUID.
NO_GROUP = uuid.UUID(int=0)


class CostRollup(Base):
    """Sums of the cost records of one tenant, hour (of ``ended_at``), model, mode and group,
    added to in the transaction that writes the records."""

    __tablename__ = "cost_rollups"
    # Every tenant's hours (the operator's view of all tenants).
    __table_args__ = (Index("ix_cost_rollups_hour", "hour"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    completed: Mapped[int] = mapped_column(BigInteger)
    failed: Mapped[int] = mapped_column(BigInteger)
    cancelled: Mapped[int] = mapped_column(BigInteger)
    cache_exact: Mapped[int] = mapped_column(BigInteger)
    cache_semantic: Mapped[int] = mapped_column(BigInteger)
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_input_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[Decimal] = mapped_column(MONEY)
    naive_cost_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_cache_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_coalescing_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_routing_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_batching_usd: Mapped[Decimal] = mapped_column(MONEY)
    saved_prompt_cache_usd: Mapped[Decimal] = mapped_column(MONEY)
    latency_sum_seconds: Mapped[float]
    deadline_jobs: Mapped[int] = mapped_column(BigInteger)
    deadline_met: Mapped[int] = mapped_column(BigInteger)


# One count column per latency bucket.
for _name in LATENCY_COLUMNS:
    cast(Table, CostRollup.__table__).append_column(Column(_name, BigInteger, nullable=False))


class CostMinute(Base):
    """Completed jobs per tenant and minute (of ``ended_at``): the peak-minute throughput."""

    __tablename__ = "cost_minutes"
    __table_args__ = (Index("ix_cost_minutes_minute", "minute"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    completed: Mapped[int] = mapped_column(BigInteger)
