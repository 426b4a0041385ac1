"""``GET /v1/stats`` from the rollups: whole hours from ``cost_rollups``, the partial hours at
either end of the range from the cost records themselves (at most two hours of them), peaks
from ``cost_minutes``. Nothing scans the jobs table, so the answer costs the same with ten
jobs stored or ten million.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import text
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
from app.models import NO_GROUP

RESOLUTION = (
    f"latency percentiles from {histogram.BUCKETS} fixed buckets growing by 2^(1/3) from "
    f"{histogram.FIRST} s: within about 13 % of the exact value"
)
_KEYS: dict[str | None, str] = {
    None: "''",
    "model": "model",
    "mode": "mode",
    "day": "date_trunc('day', hour, 'UTC')",
    "hour": "hour",
    "group": "group_id::text",
}
_MINUTE_KEYS: dict[str | None, str] = {
    None: "''",
    "day": "date_trunc('day', minute, 'UTC')",
    "hour": "date_trunc('hour', minute, 'UTC')",
}
_SPAN = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
Totals = dict[str, Any]


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _sql(group_by: str | None, *, all_tenants: bool) -> str:
    """The stats query (fixed text: column names, the histogram's bounds; values are bound)."""
    tenant = "" if all_tenants else "tenant_id = :tenant AND "
    names = [name for name, _ in repository.aggregates()]
    columns = ", ".join(names)
    edges = (
        "SELECT tenant_id, date_trunc('hour', ended_at, 'UTC') AS hour, "  # noqa: S608
        f"coalesce(model, '') AS model, coalesce(mode, '') AS mode, "
        f"coalesce(group_id, '{NO_GROUP}'::uuid) AS group_id, "
        + ", ".join(f"{expression} AS {name}" for name, expression in repository.aggregates())
        + " FROM ("
        + repository.bucketed(
            f"cost_records WHERE {tenant}((ended_at >= :a1 AND ended_at < :b1) "
            "OR (ended_at >= :a2 AND ended_at < :b2))"
        )
        + ") AS r GROUP BY 1, 2, 3, 4, 5"
    )
    hours = (
        f"SELECT tenant_id, hour, model, mode, group_id, {columns} FROM cost_rollups "  # noqa: S608
        f"WHERE {tenant}hour >= :h0 AND hour < :h1"
    )
    sums = ", ".join(f"sum({name}) AS {name}" for name in names)
    return (
        f"SELECT {_KEYS[group_by]} AS key, mode, {sums} "  # noqa: S608
        f"FROM ({hours} UNION ALL {edges}) AS u GROUP BY 1, 2"
    )


def _peaks_sql(group_by: str | None, *, all_tenants: bool) -> str:
    key = _MINUTE_KEYS[group_by]
    if all_tenants:
        return (
            f"SELECT key, max(n) FROM (SELECT {key} AS key, minute, sum(completed) AS n "  # noqa: S608
            "FROM cost_minutes WHERE minute >= :m0 AND minute < :until GROUP BY 1, 2) AS x "
            "GROUP BY 1"
        )
    return (
        f"SELECT {key} AS key, max(completed) FROM cost_minutes "  # noqa: S608
        "WHERE tenant_id = :tenant AND minute >= :m0 AND minute < :until GROUP BY 1"
    )


def _peaks(
    session: Session, group_by: str | None, *, all_tenants: bool, params: dict[str, Any]
) -> dict[Any, int]:
    """The busiest minute's completions, per day or hour bucket (or overall: key '')."""
    rows = session.execute(text(_peaks_sql(group_by, all_tenants=all_tenants)), params)
    return {key: int(count) for key, count in rows}


def _add(into: Totals, row: Totals) -> None:
    for name, value in row.items():
        into[name] = into.get(name, 0) + (value or 0)


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(QUANTUM)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _percentiles(totals: Totals) -> Percentiles:
    counts = [int(totals.get(name, 0)) for name in histogram.COLUMNS]
    completed = int(totals.get("completed", 0))
    return Percentiles(
        p50=histogram.percentile(counts, 0.50),
        p95=histogram.percentile(counts, 0.95),
        p99=histogram.percentile(counts, 0.99),
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
        edges = (since, until, until, until)
    else:
        edges = (since, first_hour, last_hour, until)
    params: dict[str, Any] = {
        "tenant": tenant_id,
        "h0": first_hour,
        "h1": last_hour,
        "a1": edges[0],
        "b1": edges[1],
        "a2": edges[2],
        "b2": edges[3],
        "m0": since.replace(second=0, microsecond=0),
        "until": until,
    }
    all_tenants = tenant_id is None
    overall: Totals = {}
    overall_by_mode: dict[str, Totals] = defaultdict(dict)
    groups: dict[Any, Totals] = defaultdict(dict)
    groups_by_mode: dict[Any, dict[str, Totals]] = defaultdict(lambda: defaultdict(dict))
    for row in session.execute(text(_sql(group_by, all_tenants=all_tenants)), params).mappings():
        values = {name: value for name, value in row.items() if name not in ("key", "mode")}
        mode = row["mode"] or "none"
        _add(overall, values)
        _add(overall_by_mode[mode], values)
        _add(groups[row["key"]], values)
        _add(groups_by_mode[row["key"]][mode], values)
    # Busiest minutes per day or hour for those groupings; overall for every other one.
    by_span = group_by if group_by in _SPAN else None
    peaks = _peaks(session, by_span, all_tenants=all_tenants, params=params)
    overall_peak = max(peaks.values(), default=0) if by_span else peaks.get("", 0)
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
                peak=peaks.get(key) if group_by in _SPAN else None,
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
