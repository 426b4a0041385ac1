from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, Numeric, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

MONEY = Numeric(24, 12)
# The latency histogram's buckets (app/ledger/histogram.py keeps the bounds).
LATENCY_BUCKETS = 75
LATENCY_COLUMNS = tuple(f"lpr_{i:02d}" for i in range(LATENCY_BUCKETS))
# Rollup keys have no NULLs (a primary key): no model or mode is '', no group the nil UUID.
NO_GROUP = uuid.UUID(int=0)
# The tenant of cost_peaks rows that count every tenant's jobs (the operator's view).
EVERY_TENANT = uuid.UUID(int=0)
# cost_peaks' count of completions in each minute of its hour.
MINUTE_COLUMNS = tuple(f"m{i:02d}" for i in range(60))


class RollupSums:
    """The sums every rollup keeps of its cost records (the key is the table's own)."""

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


class CostRollup(RollupSums, Base):
    """Sums of the cost records of one tenant, hour (of ``ended_at``), model and mode, added
    to in the transaction that writes the records."""

    __tablename__ = "cost_rollups"
    # Every tenant's hours (the operator's view of all tenants).
    __table_args__ = (Index("ix_cost_rollups_hour", "hour"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), primary_key=True)


class CostDayRollup(RollupSums, Base):
    """The same sums per tenant, UTC day, model and mode: long ranges read few rows."""

    __tablename__ = "cost_day_rollups"
    __table_args__ = (Index("ix_cost_day_rollups_day", "day"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[datetime] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), primary_key=True)


class CostGroupRollup(RollupSums, Base):
    """The same sums per tenant, hour, job group and mode, for the jobs in a group only (read
    for ``group_by=group``; the jobs in none are the total minus these)."""

    __tablename__ = "cost_group_rollups"
    __table_args__ = (Index("ix_cost_group_rollups_hour", "hour"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    group_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), primary_key=True)


class CostGroupTotal(RollupSums, Base):
    """The same sums per tenant, job group and mode over all time, with the first and last
    ``ended_at`` they hold: a range that holds a group's jobs wholly reads its one row per
    mode (the jobs in no group are the total minus the groups)."""

    __tablename__ = "cost_group_totals"
    # The groups whose jobs ended in a range: those that ended last after its start (which of
    # them it cuts is read from the index alone).
    __table_args__ = (
        Index(
            "ix_cost_group_totals_tenant_last",
            "tenant_id",
            "last_ended_at",
            postgresql_include=["first_ended_at", "group_id", "mode"],
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), primary_key=True)
    first_ended_at: Mapped[datetime]
    last_ended_at: Mapped[datetime]


# One count column per latency bucket, in every rollup.
for _model in (CostRollup, CostDayRollup, CostGroupRollup, CostGroupTotal):
    for _name in LATENCY_COLUMNS:
        cast(Table, _model.__table__).append_column(Column(_name, BigInteger, nullable=False))


class CostPeak(Base):
    """Completed jobs in each minute of one hour (of ``ended_at``: ``m00`` .. ``m59``), per
    tenant and per value of a grouping (``dimension`` 'all' with key '', 'model', 'mode' or
    'group'), and the busiest of those minutes: the peak-minute throughput. Rows of tenant
    ``EVERY_TENANT`` count every tenant's jobs (a peak across tenants is not the sum of
    theirs), so the table has no foreign key to tenants."""

    __tablename__ = "cost_peaks"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    dimension: Mapped[str] = mapped_column(String(10), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    peak: Mapped[int] = mapped_column(Integer)


for _name in MINUTE_COLUMNS:
    cast(Table, CostPeak.__table__).append_column(Column(_name, Integer, nullable=False))
