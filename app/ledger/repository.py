"""Queries and writes on the ledger's tables: cost records and their rollups."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from app.kit.db import execute_binary, typed_arrays
from app.ledger import histogram
from app.models import NO_GROUP, CostRecord, CostRollup

RECORDS = cast(Table, CostRecord.__table__)
ROLLUPS = cast(Table, CostRollup.__table__)
# The record columns a writer fills (recorded_at is the database's clock).
RECORD_COLUMNS: tuple[str, ...] = tuple(c.name for c in RECORDS.columns if c.name != "recorded_at")
# The rollup's key; everything else is a sum.
KEY = ("tenant_id", "hour", "model", "mode", "group_id")
SUMS: tuple[str, ...] = tuple(c.name for c in ROLLUPS.columns if c.name not in KEY)


def aggregates() -> list[tuple[str, str]]:
    """Each rollup sum as an aggregate over cost-record rows ``r`` carrying their latency
    bucket as ``b``: the one definition the writer and the stats' partial hours share."""
    money = {
        "cost_usd": "actual_usd",
        "naive_cost_usd": "naive_usd",
        **{name: name for name in SUMS if name.startswith("saved_")},
    }
    counts = {
        "completed": "state = 'completed'",
        "failed": "state = 'failed'",
        "cancelled": "state = 'cancelled'",
        "cache_exact": "answered_by = 'cache_exact'",
        "cache_semantic": "answered_by = 'cache_semantic'",
        "deadline_jobs": "deadline IS NOT NULL AND state <> 'cancelled'",
        "deadline_met": "state = 'completed' AND ended_at <= deadline",
    }
    result: list[tuple[str, str]] = []
    for name in SUMS:
        if name in counts:
            expression = f"count(*) FILTER (WHERE {counts[name]})"
        elif name in money:
            expression = f"coalesce(sum({money[name]}), 0)"
        elif name == "latency_sum_seconds":
            expression = "coalesce(sum(latency_seconds), 0)"
        elif name in histogram.COLUMNS:
            expression = f"count(*) FILTER (WHERE b = {histogram.COLUMNS.index(name)})"
        else:
            expression = f"coalesce(sum({name}), 0)"
        result.append((name, expression))
    return result


def bucketed(relation: str) -> str:
    """``relation``'s rows with their latency bucket ``b`` (fixed text)."""
    bounds = histogram.bounds_sql()
    return f"SELECT *, width_bucket(latency_seconds, {bounds}) AS b FROM {relation}"  # noqa: S608


def _record_sql(placeholders: Sequence[str]) -> str:
    columns = ", ".join(RECORD_COLUMNS)
    sums = aggregates()
    key = (
        "tenant_id, date_trunc('hour', ended_at, 'UTC'), coalesce(model, ''), "
        f"coalesce(mode, ''), coalesce(group_id, '{NO_GROUP}'::uuid)"
    )
    updates = ", ".join(f"{name} = cost_rollups.{name} + excluded.{name}" for name, _ in sums)
    # Fixed text throughout: the table's own column names and the histogram's bounds; every
    # value is a parameter. A record already written (the job ended before, a transition run
    # twice) conflicts and is not returned, so it is never added to a rollup twice. Keys are
    # upserted in order, so two transactions never wait on each other's rows in a cycle.
    return (
        f"WITH rec AS (INSERT INTO cost_records ({columns}) "  # noqa: S608
        f"SELECT * FROM unnest({', '.join(placeholders)}) "
        "ON CONFLICT (job_id) DO NOTHING RETURNING *), "
        f"hours AS (INSERT INTO cost_rollups ({', '.join(KEY)}, "
        f"{', '.join(name for name, _ in sums)}) "
        f"SELECT {key}, {', '.join(expression for _, expression in sums)} "
        f"FROM ({bucketed('rec')}) AS r GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates} RETURNING 1), "
        "minutes AS (INSERT INTO cost_minutes (tenant_id, minute, completed) "
        "SELECT tenant_id, date_trunc('minute', ended_at, 'UTC'), count(*) FROM rec "
        "WHERE state = 'completed' GROUP BY 1, 2 ORDER BY 1, 2 "
        "ON CONFLICT (tenant_id, minute) DO UPDATE "
        "SET completed = cost_minutes.completed + excluded.completed RETURNING 1) "
        "SELECT job_id FROM rec"
    )


def insert_records(session: Session, columns: dict[str, list[Any]]) -> set[UUID]:
    """Write cost records (one list of values per record column) and add them to the rollups,
    in one statement; returns the jobs newly recorded."""
    if not columns["job_id"]:
        return set()
    placeholders, arrays = typed_arrays(
        session, RECORDS, RECORD_COLUMNS, [columns[name] for name in RECORD_COLUMNS]
    )
    with execute_binary(session, _record_sql(placeholders), arrays) as cursor:
        return {row[0] for row in cursor.fetchall()}


def next_hour(moment: datetime) -> datetime:
    """The first whole hour at or after ``moment``."""
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(hours=1)


def spent(session: Session, *, tenant_id: UUID, since: datetime) -> Decimal:
    """Actual cost of the tenant's jobs that ended at or after ``since``: whole hours from the
    rollups, the partial first hour from the records."""
    boundary = next_hour(since)
    hours = select(func.coalesce(func.sum(CostRollup.cost_usd), 0)).where(
        CostRollup.tenant_id == tenant_id, CostRollup.hour >= boundary
    )
    edge = select(func.coalesce(func.sum(CostRecord.actual_usd), 0)).where(
        CostRecord.tenant_id == tenant_id,
        CostRecord.ended_at >= since,
        CostRecord.ended_at < boundary,
    )
    total = Decimal(session.scalar(hours) or 0) + Decimal(session.scalar(edge) or 0)
    return total
