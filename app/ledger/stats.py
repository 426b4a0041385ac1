"""``GET /v1/stats`` from the rollups: whole days from ``cost_day_rollups``, the whole hours
around them from ``cost_rollups`` (``cost_group_rollups`` per group), the partial hours at
either end of the range from the cost records themselves (at most two hours of them), peaks
from ``cost_peaks``. Nothing scans the jobs table, so the answer costs the same with ten
jobs stored or ten million: it follows the rollup rows in the range (a 30-day range reads 28
days' and 48 hours' rows per model and mode).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, text
from sqlalchemy.orm import Session

from app.ledger import histogram, repository
from app.ledger.pricing import QUANTUM
from app.ledger.schemas import (
    CacheHitRate,
    Deadlines,
    GroupBy,
    Percentiles,
    SavingsByLayer,
    StatsGroup,
    StatsOut,
    Tokens,
)
from app.models import EVERY_TENANT, NO_GROUP

RESOLUTION = (
    f"latency percentiles from {histogram.BUCKETS} fixed buckets growing by 2^(1/3) from "
    f"{histogram.FIRST} s: within about 13 % of the exact value"
)
# A grouping's key over rollup rows (``t``: their hour or day column) and over cost records.
_ROLLUP_KEYS: dict[str | None, str] = {
    None: "''",
    "model": "model",
    "mode": "mode",
    "day": "date_trunc('day', t, 'UTC')",
    "hour": "t",
    "group": "group_id::text",
}
_RECORD_KEYS: dict[str | None, str] = {
    None: "''",
    "model": "coalesce(model, '')",
    "mode": "coalesce(mode, '')",
    "day": "date_trunc('day', ended_at, 'UTC')",
    "hour": "date_trunc('hour', ended_at, 'UTC')",
    "group": "group_id::text",
}
# The peaks kept per grouping (app/ledger/repository.PEAK_KEYS) and their key over them.
_PEAK_DIMENSIONS: dict[str | None, str] = {"model": "model", "mode": "mode", "group": "group"}
_PEAK_KEYS: dict[str | None, str] = {
    None: "''",
    "day": "date_trunc('day', hour, 'UTC')",
    "hour": "hour",
}
_SPAN = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
_EDGES = "((ended_at >= :a1 AND ended_at < :b1) OR (ended_at >= :a2 AND ended_at < :b2))"
Totals = dict[str, Any]


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_day(moment: datetime) -> datetime:
    floor = _floor_day(moment)
    return floor if floor == moment else floor + timedelta(days=1)


def _sql(group_by: str | None, *, all_tenants: bool, groups_only: bool = False) -> str:
    """The stats query (fixed text: column names, the histogram's bounds; values are bound):
    whole days from the daily rollup, the whole hours around them from the hourly one (or,
    for ``groups_only``, every whole hour of the group rollup), the partial hours at the ends
    from the records. Postgres sums per key and mode, per key, per mode and overall."""
    tenant = "" if all_tenants else "tenant_id = :tenant AND "
    names = [name for name, _ in repository.aggregates()]
    columns = ", ".join(names)
    key = _ROLLUP_KEYS[group_by]
    if groups_only:
        rollups = (
            f"SELECT {key} AS key, mode, {columns} FROM "  # noqa: S608
            "(SELECT *, hour AS t FROM cost_group_rollups) AS g "
            f"WHERE {tenant}hour >= :h0 AND hour < :h1"
        )
    else:
        rollups = (
            f"SELECT {key} AS key, mode, {columns} FROM "  # noqa: S608
            "(SELECT *, day AS t FROM cost_day_rollups) AS d "
            f"WHERE {tenant}day >= :d0 AND day < :d1 UNION ALL "
            f"SELECT {key} AS key, mode, {columns} FROM "
            "(SELECT *, hour AS t FROM cost_rollups) AS h "
            f"WHERE {tenant}((hour >= :h0 AND hour < :d0) OR (hour >= :d1 AND hour < :h1))"
        )
    grouped = " AND group_id IS NOT NULL" if groups_only else ""
    edges = (
        f"SELECT {_RECORD_KEYS[group_by]} AS key, coalesce(mode, '') AS mode, "  # noqa: S608
        + ", ".join(f"{expression} AS {name}" for name, expression in repository.aggregates())
        + " FROM ("
        + repository.bucketed(f"cost_records WHERE {tenant}{_EDGES}{grouped}")
        + ") AS r GROUP BY 1, 2"
    )
    # Counts come back as integers, the histogram as one array (quick to fetch).
    sums = ", ".join(
        f"sum({name})::bigint AS {name}" if name in _COUNTS else f"sum({name}) AS {name}"
        for name in names
        if name not in histogram.COLUMNS
    )
    sums += ", ARRAY[" + ", ".join(f"sum({n})::bigint" for n in histogram.COLUMNS) + "] AS lpr"
    return (
        f"SELECT key, mode, GROUPING(key, mode) AS level, {sums} "  # noqa: S608
        f"FROM ({rollups} UNION ALL {edges}) AS u "
        "GROUP BY GROUPING SETS ((key, mode), (key), (mode), ())"
    )


def _peaks_sql(group_by: str | None, *, all_tenants: bool) -> str:
    """The busiest minute per key: whole hours' peaks, the partial hours' minutes counted
    from the records."""
    tenant = "" if all_tenants else "tenant_id = :tenant AND "
    dimension = _PEAK_DIMENSIONS.get(group_by, "all")
    key = "key" if dimension != "all" else _PEAK_KEYS[group_by]
    grouped = " AND group_id IS NOT NULL" if group_by == "group" else ""
    return (
        f"SELECT key, max(n) FROM (SELECT {key} AS key, peak AS n FROM cost_peaks "  # noqa: S608
        f"WHERE tenant_id = :peaks AND dimension = '{dimension}' "
        "AND hour >= :h0 AND hour < :h1 UNION ALL "
        f"SELECT {_RECORD_KEYS[group_by]} AS key, count(*) AS n FROM cost_records "
        f"WHERE {tenant}state = 'completed' AND {_EDGES}{grouped} "
        "GROUP BY 1, date_trunc('minute', ended_at, 'UTC')) AS u GROUP BY 1"
    )


def _peaks(
    session: Session, group_by: str | None, *, all_tenants: bool, params: dict[str, Any]
) -> dict[Any, int]:
    """The busiest minute's completions per key of ``group_by`` (overall: key '')."""
    rows = session.execute(text(_peaks_sql(group_by, all_tenants=all_tenants)), params)
    return {key: int(count) for key, count in rows}


def _totals(
    session: Session,
    group_by: str | None,
    *,
    all_tenants: bool,
    params: dict[str, Any],
    groups_only: bool = False,
) -> tuple[Totals, dict[str, Totals], dict[Any, Totals], dict[Any, dict[str, Totals]]]:
    """Overall, per mode, per key, per key and mode."""
    overall: Totals = {}
    by_mode: dict[str, Totals] = {}
    groups: dict[Any, Totals] = {}
    groups_by_mode: dict[Any, dict[str, Totals]] = defaultdict(dict)
    sql = _sql(group_by, all_tenants=all_tenants, groups_only=groups_only)
    # Straight from the driver: thousands of rows of ~100 columns each (a grouping per
    # job group), where building SQLAlchemy rows cost more than the query.
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(_BINDS.sub(r"%(\1)s", sql.replace("%", "%%")), params)
        names = [column[0] for column in cursor.description or ()][len(_LABELS) :]
        rows = cursor.fetchall()
    finally:
        cursor.close()
    for row in rows:
        key, mode, level = row[0], row[1] or "none", row[2]
        sums = row[len(_LABELS) :]
        values: Totals = dict(zip(names, sums, strict=True))
        if None in sums:  # sums over no rows at all: the grand total of an empty range
            values = {name: value or 0 for name, value in values.items()}
            values["lpr"] = [count or 0 for count in row[-1] or _NO_LATENCIES]
        if level == 0:
            groups_by_mode[key][mode] = values
        elif level == 1:
            groups[key] = values
        elif level == 2:
            by_mode[mode] = values
        else:
            overall = values
    return overall, by_mode, groups, groups_by_mode


_WORK_MEM = "64MB"
_LABELS = ("key", "mode", "level")  # the first columns of a stats row, in order
_BINDS = re.compile(r"(?<![:\w]):(\w+)")
_COUNTS = frozenset(
    column.name for column in repository.ROLLUPS.columns if isinstance(column.type, BigInteger)
)
_NO_LATENCIES = [0] * histogram.BUCKETS


def _minus(whole: Totals, part: Totals) -> Totals:
    """``whole`` less ``part`` (all jobs less those in groups: the jobs in no group)."""
    rest = dict(whole)
    for name, value in part.items():
        if name == "lpr":
            rest[name] = [a - b for a, b in zip(rest.get(name) or _NO_LATENCIES, value,
                                                strict=True)]  # fmt: skip
        else:
            rest[name] = (rest.get(name) or 0) - (value or 0)
    return rest


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(QUANTUM)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _percentiles(totals: Totals) -> Percentiles:
    counts = totals.get("lpr") or _NO_LATENCIES
    completed = int(totals.get("completed", 0))
    p50, p95, p99 = histogram.percentiles(counts, (0.50, 0.95, 0.99))
    return Percentiles(
        p50=p50,
        p95=p95,
        p99=p99,
        mean=round(float(totals.get("latency_sum_seconds", 0)) / completed, 4)
        if completed
        else None,
    )


def _block(
    totals: Totals, by_mode: dict[str, Totals], *, seconds: float, peak: int | None
) -> dict[str, Any]:
    completed = int(totals.get("completed", 0))
    failed, cancelled = int(totals.get("failed", 0)), int(totals.get("cancelled", 0))
    cost, naive = _money(totals.get("cost_usd")), _money(totals.get("naive_cost_usd"))
    exact, semantic = int(totals.get("cache_exact", 0)), int(totals.get("cache_semantic", 0))
    deadline_jobs, met = int(totals.get("deadline_jobs", 0)), int(totals.get("deadline_met", 0))
    return {
        "jobs": {
            "completed": completed,
            "failed": failed,
            "cancelled": cancelled,
            "total": completed + failed + cancelled,
        },
        "cost_usd": cost,
        "naive_cost_usd": naive,
        "saved_usd": naive - cost,
        "cpr_usd": (cost / completed).quantize(QUANTUM) if completed else None,
        "naive_cpr_usd": (naive / completed).quantize(QUANTUM) if completed else None,
        "savings_usd": SavingsByLayer(
            cache=_money(totals.get("saved_cache_usd")),
            coalescing=_money(totals.get("saved_coalescing_usd")),
            routing=_money(totals.get("saved_routing_usd")),
            batching=_money(totals.get("saved_batching_usd")),
            prompt_cache=_money(totals.get("saved_prompt_cache_usd")),
        ),
        "lpr_seconds": _percentiles(totals),
        "lpr_seconds_by_mode": {
            mode: _percentiles(values)
            for mode, values in sorted(by_mode.items())
            if values.get("completed")
        },
        "deadlines": Deadlines(jobs=deadline_jobs, met=met, met_rate=_rate(met, deadline_jobs)),
        "throughput_jobs_per_s": round(completed / seconds, 6) if seconds > 0 else 0.0,
        "peak_minute_jobs_per_s": None if peak is None else round(peak / 60, 6),
        "cache_hit_rate": CacheHitRate(
            total=_rate(exact + semantic, completed),
            exact=_rate(exact, completed),
            semantic=_rate(semantic, completed),
        ),
        "tokens": Tokens(
            input=int(totals.get("input_tokens", 0)),
            cached_input=int(totals.get("cached_input_tokens", 0)),
            cache_write=int(totals.get("cache_write_tokens", 0)),
            output=int(totals.get("output_tokens", 0)),
        ),
    }


def _key_text(key: Any) -> str:
    if isinstance(key, datetime):
        return key.isoformat()
    if key in ("", str(NO_GROUP)):
        return "none"
    return str(key)


def stats(
    session: Session,
    *,
    tenant_id: UUID | None,
    since: datetime,
    until: datetime,
    group_by: GroupBy | None = None,
) -> StatsOut:
    """Stats of the jobs that ended in ``[since, until)``: one tenant's, or every tenant's
    when ``tenant_id`` is None (the operator's view)."""
    first_hour = repository.next_hour(since)
    last_hour = _floor_hour(until)
    if first_hour >= last_hour:  # inside one hour, or two partial ones: records only
        first_hour = last_hour = until
        edges = (since, until, until, until)
    else:
        edges = (since, first_hour, last_hour, until)
    # Whole days inside the whole hours, unless the answer is per hour.
    first_day, last_day = _next_day(first_hour), _floor_day(last_hour)
    if first_day >= last_day or group_by == "hour":
        first_day = last_day = last_hour
    params: dict[str, Any] = {
        "tenant": tenant_id,
        "peaks": tenant_id or EVERY_TENANT,
        "h0": first_hour,
        "h1": last_hour,
        "d0": first_day,
        "d1": last_day,
        "a1": edges[0],
        "b1": edges[1],
        "a2": edges[2],
        "b2": edges[3],
    }
    all_tenants = tenant_id is None
    # A grouping per job group sorts thousands of ~1 kB rows: in memory, not in temp files.
    session.execute(text(f"SET LOCAL work_mem = '{_WORK_MEM}'"))
    if group_by == "group":
        overall, overall_by_mode, _, _ = _totals(session, None, all_tenants=all_tenants,
                                                 params=params)  # fmt: skip
        in_groups, in_groups_by_mode, groups, groups_by_mode = _totals(
            session, group_by, all_tenants=all_tenants, params=params, groups_only=True
        )
        if overall.get("completed") or overall.get("failed") or overall.get("cancelled"):
            none = _minus(overall, in_groups)
            if any(none.get(name) for name in ("completed", "failed", "cancelled")):
                groups[""] = none
                groups_by_mode[""] = {
                    mode: _minus(values, in_groups_by_mode.get(mode, {}))
                    for mode, values in overall_by_mode.items()
                }
    else:
        overall, overall_by_mode, groups, groups_by_mode = _totals(
            session, group_by, all_tenants=all_tenants, params=params
        )
    peaks = _peaks(session, group_by, all_tenants=all_tenants, params=params)
    if group_by in _PEAK_DIMENSIONS:
        overall_peak = _peaks(session, None, all_tenants=all_tenants, params=params).get("", 0)
    else:
        overall_peak = max(peaks.values(), default=0)
    seconds = (until - since).total_seconds()
    out_groups: list[StatsGroup] = []
    if group_by is not None:
        for key in sorted(groups, key=lambda k: (str(type(k)), k)):
            span = seconds
            if group_by in _SPAN:
                start, end = max(key, since), min(key + _SPAN[group_by], until)
                span = (end - start).total_seconds()
            block = _block(
                groups[key],
                groups_by_mode[key],
                seconds=span,
                # The jobs in no group have no peak kept (a peak is not a difference).
                peak=None if group_by == "group" and key == "" else peaks.get(key, 0),
            )
            out_groups.append(StatsGroup(key=_key_text(key), **block))
    return StatsOut(
        since=since,
        until=until,
        group_by=group_by,
        lpr_resolution=RESOLUTION,
        groups=out_groups,
        **_block(overall, overall_by_mode, seconds=seconds, peak=overall_peak),
    )
