"""Queries and writes on the ledger's tables: cost records, their rollups and peaks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from app.kit.db import execute_binary, typed_arrays
from app.ledger import histogram
from app.models import EVERY_TENANT, MINUTE_COLUMNS, CostDayRollup, CostRecord, CostRollup

RECORDS = cast(Table, CostRecord.__table__)
ROLLUPS = cast(Table, CostRollup.__table__)
# The record columns a writer fills (recorded_at is the database's clock).
RECORD_COLUMNS: tuple[str, ...] = tuple(c.name for c in RECORDS.columns if c.name != "recorded_at")
# The savings layers, as the records' saved_<layer>_usd columns name them.
LAYERS = ("cache", "coalescing", "routing", "batching", "prompt_cache")
# The hourly rollup's key; everything else is a sum, the same in every rollup.
KEY = ("tenant_id", "hour", "model", "mode")
SUMS: tuple[str, ...] = tuple(c.name for c in ROLLUPS.columns if c.name not in KEY)
# Each rollup, its key and the key's expression over cost-record rows.
_HOUR = "date_trunc('hour', ended_at, 'UTC')"
_MODEL, _MODE = "coalesce(model, '')", "coalesce(mode, '')"
ROLLUP_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "cost_rollups": (("tenant_id", "tenant_id"), ("hour", _HOUR), ("model", _MODEL),
                     ("mode", _MODE)),
    "cost_day_rollups": (("tenant_id", "tenant_id"), ("day", "date_trunc('day', ended_at, 'UTC')"),
                         ("model", _MODEL), ("mode", _MODE)),
    "cost_group_rollups": (("tenant_id", "tenant_id"), ("hour", _HOUR), ("group_id", "group_id"),
                           ("mode", _MODE)),
    "cost_group_totals": (("tenant_id", "tenant_id"), ("group_id", "group_id"), ("mode", _MODE)),
}  # fmt: skip
# The group rollups hold the jobs in a group only.
_ROLLUP_FILTER = {
    "cost_group_rollups": "WHERE group_id IS NOT NULL",
    "cost_group_totals": "WHERE group_id IS NOT NULL",
}
# The all-time group rollup also keeps the span of end times it holds: (column, aggregate
# over records and over its own rows, how a new value meets the stored one).
_SPANS = {
    "cost_group_totals": (
        ("first_ended_at", "min", "least"),
        ("last_ended_at", "max", "greatest"),
    ),
}
# The groupings a peak is kept for: (dimension, key over cost-record rows).
PEAK_KEYS = (("all", "''"), ("model", _MODEL), ("mode", _MODE), ("group", "group_id::text"))


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


def _rollup_sql(table: str, sums: list[tuple[str, str]]) -> str:
    """Add the records in ``r`` to ``table`` (fixed text: column names, expressions).

    In two steps, so each record is aggregated once and not once per histogram bucket: the
    sums per key and latency bucket ``b``, then per key with the bucket counts gathered in a
    JSON object that the bucket columns are read from."""
    key = ROLLUP_KEYS[table]
    names = [name for name, _ in key]
    positions = ", ".join(str(i + 1) for i in range(len(key)))
    plain = [(name, expression) for name, expression in sums if name not in histogram.COLUMNS]
    spans = _SPANS.get(table, ())
    per_bucket = (
        f"SELECT {', '.join(f'{e} AS {n}' for n, e in key)}, b, "  # noqa: S608
        f"{', '.join(f'{e} AS {n}' for n, e in plain)}, count(*) AS n"
        + "".join(f", {agg}(ended_at) AS {name}" for name, agg, _ in spans)
        + f" FROM r {_ROLLUP_FILTER.get(table, '')} GROUP BY {positions}, {len(key) + 1}"
    )
    per_key = (
        f"SELECT {', '.join(names)}, {', '.join(f'sum({n}) AS {n}' for n, _ in plain)}, "  # noqa: S608
        "jsonb_object_agg(b, n) FILTER (WHERE b IS NOT NULL) AS j"
        + "".join(f", {agg}({name}) AS {name}" for name, agg, _ in spans)
        + f" FROM ({per_bucket}) AS s GROUP BY {positions}"
    )
    buckets = [
        f"coalesce((j ->> '{histogram.COLUMNS.index(name)}')::bigint, 0)"
        if name in histogram.COLUMNS
        else name
        for name, _ in sums
    ] + [name for name, _, _ in spans]
    columns = [name for name, _ in sums] + [name for name, _, _ in spans]
    updates = ", ".join(
        [f"{name} = {table}.{name} + excluded.{name}" for name, _ in sums]
        + [f"{name} = {meet}({table}.{name}, excluded.{name})" for name, _, meet in spans]
    )
    return (
        f"INSERT INTO {table} ({', '.join(names)}, {', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(names)}, {', '.join(buckets)} FROM ({per_key}) AS k "
        f"ORDER BY {positions} ON CONFLICT ({', '.join(names)}) DO UPDATE SET {updates} "
        "RETURNING 1"
    )


def _peaks_sql() -> str:
    """Add the completed records in ``rec`` to the minute counts of ``cost_peaks``, for their
    tenant and for every tenant, per grouping value, and keep each hour's busiest minute
    (counted per minute first, then gathered per hour in a JSON object the minute columns are
    read from)."""
    keys = ", ".join(
        f"({tenant}, '{dimension}', {expression})"
        for tenant in ("tenant_id", f"'{EVERY_TENANT}'::uuid")
        for dimension, expression in PEAK_KEYS
    )
    per_minute = (
        "SELECT v.t, v.d, date_trunc('hour', ended_at, 'UTC') AS h, v.k, "  # noqa: S608
        "extract(minute FROM ended_at AT TIME ZONE 'UTC')::int AS m, count(*) AS n "
        f"FROM rec, LATERAL (VALUES {keys}) AS v(t, d, k) "
        "WHERE state = 'completed' AND v.k IS NOT NULL GROUP BY 1, 2, 3, 4, 5"
    )
    minutes = ", ".join(f"coalesce((j ->> '{i}')::int, 0)" for i in range(len(MINUTE_COLUMNS)))
    added = [f"cost_peaks.{m} + excluded.{m}" for m in MINUTE_COLUMNS]
    return (
        "peaks AS (INSERT INTO cost_peaks "  # noqa: S608
        f"(tenant_id, dimension, hour, key, {', '.join(MINUTE_COLUMNS)}, peak) "
        f"SELECT t, d, h, k, {minutes}, top FROM (SELECT t, d, h, k, "
        f"jsonb_object_agg(m, n) AS j, max(n) AS top FROM ({per_minute}) AS c "
        "GROUP BY 1, 2, 3, 4) AS p ORDER BY 1, 2, 3, 4 "
        "ON CONFLICT (tenant_id, dimension, hour, key) DO UPDATE "
        f"SET {', '.join(f'{m} = {e}' for m, e in zip(MINUTE_COLUMNS, added, strict=True))}, "
        f"peak = greatest({', '.join(added)}) RETURNING 1)"
    )


def _maintenance_sql() -> str:
    """The CTEs that add the records of CTE ``rec`` to every rollup and to the peaks."""
    sums = aggregates()
    rollups = ", ".join(f"{table} AS ({_rollup_sql(table, sums)})" for table in ROLLUP_KEYS)
    return f"r AS ({bucketed('rec')}), {rollups}, {_peaks_sql()}"


def _record_sql(placeholders: Sequence[str]) -> str:
    columns = ", ".join(RECORD_COLUMNS)
    # Fixed text throughout: the tables' own column names and the histogram's bounds; every
    # value is a parameter. A record already written (the job ended before, a transition run
    # twice) conflicts and is not returned, so it is never added to a rollup twice. Keys are
    # upserted in order, so two transactions never wait on each other's rows in a cycle.
    return (
        f"WITH rec AS (INSERT INTO cost_records ({columns}) "  # noqa: S608
        f"SELECT * FROM unnest({', '.join(placeholders)}) "
        f"ON CONFLICT (job_id) DO NOTHING RETURNING *), {_maintenance_sql()} "
        "SELECT job_id FROM rec"
    )


def add_stored_records(session: Session, *, since: datetime, until: datetime) -> int:
    """Add the cost records already stored that ended in ``[since, until)`` to the rollups and
    peaks, as the writer does (for a benchmark's records loaded in SQL); returns how many."""
    sql = (
        "WITH rec AS (SELECT * FROM cost_records WHERE ended_at >= :since "  # noqa: S608
        f"AND ended_at < :until), {_maintenance_sql()} SELECT count(*) FROM rec"
    )
    return int(session.scalar(text(sql), {"since": since, "until": until}) or 0)


def insert_records(session: Session, columns: dict[str, list[Any]]) -> set[UUID]:
    """Write cost records (one list of values per record column) and add them to the rollups
    and the peaks, in one statement; returns the jobs newly recorded."""
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
    """Actual cost of the tenant's jobs that ended at or after ``since``: whole days from the
    day rollups, whole hours before the first whole day from the hourly rollups, the partial
    first hour from the records (a budget's period starts on a day: one rollup read)."""
    since = since.astimezone(UTC)  # the rollups' days are UTC days
    hour = next_hour(since)
    floor = hour.replace(hour=0)
    day = floor if floor == hour else floor + timedelta(days=1)
    days = select(func.coalesce(func.sum(CostDayRollup.cost_usd), 0)).where(
        CostDayRollup.tenant_id == tenant_id, CostDayRollup.day >= day
    )
    hours = select(func.coalesce(func.sum(CostRollup.cost_usd), 0)).where(
        CostRollup.tenant_id == tenant_id, CostRollup.hour >= hour, CostRollup.hour < day
    )
    edge = select(func.coalesce(func.sum(CostRecord.actual_usd), 0)).where(
        CostRecord.tenant_id == tenant_id,
        CostRecord.ended_at >= since,
        CostRecord.ended_at < hour,
    )
    parts = [days] + ([hours] if hour < day else []) + ([edge] if since < hour else [])
    return sum((Decimal(session.scalar(part) or 0) for part in parts), Decimal(0))


def savings(session: Session, *, job_ids: Sequence[UUID]) -> dict[UUID, tuple[Decimal, ...]]:
    """The recorded savings by layer of the jobs that have a cost record, in ``LAYERS`` order."""
    if not job_ids:
        return {}
    columns = [RECORDS.c[f"saved_{layer}_usd"] for layer in LAYERS]
    rows = session.execute(
        select(CostRecord.job_id, *columns).where(CostRecord.job_id.in_(list(job_ids)))
    )
    return {row[0]: tuple(row[1:]) for row in rows}
