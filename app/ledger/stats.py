"""``GET /v1/stats`` from the rollups: whole days from ``cost_day_rollups``, the whole hours
around them from ``cost_rollups``, the partial hours at either end of the range from the
cost records themselves (at most two hours of them), peaks from ``cost_peaks``. Per job
group: one all-time row of ``cost_group_totals`` per group and mode the range holds wholly,
the hours of ``cost_group_rollups`` and the edge records for the few groups it cuts.
Nothing scans the jobs table, so the answer costs the same with ten jobs stored or ten
million: it follows the rollup rows in the range (a 30-day range reads 28 days' and 48
hours' rows per model and mode).
"""

from __future__ import annotations

import gc
import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.ledger import histogram, repository, sums
from app.ledger.blocks import Blocks
from app.ledger.schemas import GroupBy, StatsOut
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


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_day(moment: datetime) -> datetime:
    floor = _floor_day(moment)
    return floor if floor == moment else floor + timedelta(days=1)


def _sums_sql(rows: str) -> str:
    """Postgres sums ``rows`` (key, mode, every rollup sum) per key and mode; the roll-ups
    per key, per mode and overall are made from these (``app/ledger/sums.py``)."""
    return f"SELECT key, mode, {sums.select_sql()} FROM ({rows}) AS u GROUP BY 1, 2"  # noqa: S608


def _edges_sql(group_by: str | None, where: str) -> str:
    """The partial hours at the ends of the range, from the cost records ``where`` holds: summed
    per key, mode and latency bucket first, so each record is counted once and not once per
    bucket, then per key and mode with the bucket counts spread into their columns."""
    plain = [(n, e) for n, e in repository.aggregates() if n not in histogram.COLUMNS]
    per_bucket = (
        f"SELECT {_RECORD_KEYS[group_by]} AS key, coalesce(mode, '') AS mode, b, "  # noqa: S608
        + ", ".join(f"{expression} AS {name}" for name, expression in plain)
        + f", count(*) AS n FROM ({repository.bucketed(f'cost_records WHERE {where}')}) AS r "
        "GROUP BY 1, 2, 3"
    )
    spread = [f"sum({name}) AS {name}" for name, _ in plain] + [
        f"coalesce(sum(n) FILTER (WHERE b = {i}), 0) AS {name}"
        for i, name in enumerate(histogram.COLUMNS)
    ]
    columns = ", ".join(name for name, _ in repository.aggregates())
    return (
        f"SELECT key, mode, {columns} FROM (SELECT key, mode, {', '.join(spread)} "  # noqa: S608
        f"FROM ({per_bucket}) AS s GROUP BY 1, 2) AS e"
    )


def _sql(group_by: str | None, *, all_tenants: bool) -> str:
    """The stats query (fixed text: column names, the histogram's bounds; values are bound):
    whole days from the daily rollup, the whole hours around them from the hourly one, the
    partial hours at the ends from the records."""
    tenant = "" if all_tenants else "tenant_id = :tenant AND "
    columns = ", ".join(name for name, _ in repository.aggregates())
    key = _ROLLUP_KEYS[group_by]
    rollups = (
        f"SELECT {key} AS key, mode, {columns} FROM "  # noqa: S608
        "(SELECT *, day AS t FROM cost_day_rollups) AS d "
        f"WHERE {tenant}day >= :d0 AND day < :d1 UNION ALL "
        f"SELECT {key} AS key, mode, {columns} FROM "
        "(SELECT *, hour AS t FROM cost_rollups) AS h "
        f"WHERE {tenant}((hour >= :h0 AND hour < :d0) OR (hour >= :d1 AND hour < :h1))"
    )
    return _sums_sql(f"{rollups} UNION ALL {_edges_sql(group_by, tenant + _EDGES)}")


def _groups_sql(*, all_tenants: bool, by_hour: bool = False) -> str:
    """The stats query of the jobs in groups: each group and mode whose jobs all ended in the
    range is one row of ``cost_group_totals``; those the range cuts (they ended before it
    starts or after it ends as well) are read from the whole hours of ``cost_group_rollups``
    and the records of the partial ones. ``by_hour`` reads every group that way (the
    reference the all-time rows must agree with)."""
    tenant = "" if all_tenants else "tenant_id = :tenant AND "
    columns = ", ".join(name for name, _ in repository.aggregates())
    inside = "false" if by_hour else "first_ended_at >= :since AND last_ended_at < :until"
    # Every group and mode with jobs in the range ended last after its start (an index range).
    overlap = f"{tenant}last_ended_at >= :since AND first_ended_at < :until"
    cut = (
        "cut AS MATERIALIZED (SELECT tenant_id, group_id, mode, first_ended_at AS f, "  # noqa: S608
        f"last_ended_at AS l FROM cost_group_totals WHERE {overlap} AND NOT ({inside}))"
    )
    cut_rows = (
        # Each cut group's own hours, by the primary key: a join over every group's hours
        # would read them all (OFFSET 0 keeps the planner from making it one).
        f"SELECT h.group_id::text AS key, h.mode, {columns} FROM cut AS c "  # noqa: S608
        "CROSS JOIN LATERAL (SELECT * FROM cost_group_rollups AS r "
        "WHERE r.tenant_id = c.tenant_id AND r.group_id = c.group_id AND r.mode = c.mode "
        "AND r.hour >= greatest(:h0, date_trunc('hour', c.f, 'UTC')) "
        "AND r.hour <= c.l AND r.hour < :h1 OFFSET 0) AS h UNION ALL "
        + _edges_sql(
            "group",
            f"{tenant}{_EDGES} AND (tenant_id, group_id, coalesce(mode, '')) IN "  # noqa: S608
            "(SELECT tenant_id, group_id, mode FROM cut)",
        )
    )
    # A group and mode is either inside or cut: the rows inside need no summing.
    return (
        f"WITH {cut} SELECT group_id::text AS key, mode, "  # noqa: S608
        f"{sums.select_sql(summed=False)} FROM cost_group_totals WHERE {overlap} AND {inside} "
        f"UNION ALL {_sums_sql(cut_rows)}"
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


def _entries(session: Session, sql: str, params: dict[str, Any]) -> sums.Sums:
    """The sums per key and mode (labels ``(key, mode)``, no mode as "none") of ``sql``."""
    # Straight from the driver: thousands of rows (a grouping per job group), where building
    # SQLAlchemy rows cost more than the query.
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(_BINDS.sub(r"%(\1)s", sql.replace("%", "%%")), params)
        rows = [(key, mode or "none", *rest) for key, mode, *rest in cursor.fetchall()]
    finally:
        cursor.close()
    return sums.from_rows(rows, skip=2)


def _overall(entries: sums.Sums) -> sums.Sums:
    return sums.by(entries, [""] * len(entries.labels)) if entries.labels else sums.empty()


def _by_mode(entries: sums.Sums) -> sums.Sums:
    return sums.by(entries, [mode for _, mode in entries.labels])


def _by_key(entries: sums.Sums) -> sums.Sums:
    return sums.by(entries, [key for key, _ in entries.labels])


_WORK_MEM = "64MB"
_BINDS = re.compile(r"(?<![:\w]):(\w+)")
_STATES = ("completed", "failed", "cancelled")


_NONE = ("", str(NO_GROUP))


def _key_text(key: Any) -> str:
    if isinstance(key, datetime):
        return key.isoformat()
    if key in _NONE:
        return "none"
    return str(key)


def _params(
    *, tenant_id: UUID | None, since: datetime, until: datetime, group_by: GroupBy | None
) -> dict[str, Any]:
    """The stats queries' bounds: the range, its whole days and hours, its partial hours."""
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
    return {
        "tenant": tenant_id,
        "since": since,
        "until": until,
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
    return StatsOut.model_validate_json(
        stats_json(session, tenant_id=tenant_id, since=since, until=until, group_by=group_by)
    )


def stats_json(
    session: Session,
    *,
    tenant_id: UUID | None,
    since: datetime,
    until: datetime,
    group_by: GroupBy | None = None,
) -> bytes:
    """``stats``' answer as the JSON the endpoint writes, without building the models: the
    bytes pydantic writes for the same ``StatsOut``."""
    # An answer per job group is ~100,000 short-lived objects, none in a cycle: the cyclic
    # collector would walk the whole process's heap several times while they are made (a
    # third of the time at 2,000 groups), and they are freed by reference counting anyway.
    collecting = gc.isenabled()
    gc.disable()
    try:
        answer = _answer(session, tenant_id=tenant_id, since=since, until=until, group_by=group_by)
        # A UTC time written with "Z", as pydantic writes it (any other offset is the same).
        return orjson.dumps(answer, option=orjson.OPT_UTC_Z)
    finally:
        if collecting:
            gc.enable()


def _answer(
    session: Session,
    *,
    tenant_id: UUID | None,
    since: datetime,
    until: datetime,
    group_by: GroupBy | None,
) -> dict[str, Any]:
    params = _params(tenant_id=tenant_id, since=since, until=until, group_by=group_by)
    all_tenants = tenant_id is None
    # A grouping per job group sorts thousands of ~1 kB rows: in memory, not in temp files.
    # Parallel workers take longer to start than these few thousand rows take to read.
    session.execute(text(f"SET LOCAL work_mem = '{_WORK_MEM}'"))
    session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    if group_by == "group":
        everything = _entries(session, _sql(None, all_tenants=all_tenants), params)
        entries = _entries(session, _groups_sql(all_tenants=all_tenants), params)
        overall, modes = _overall(everything), _by_mode(everything)
        keys = _by_key(entries)
        # The jobs in no group: all of them less those in groups (a group is never '').
        none = sums.minus(overall, _overall(entries))
        if any(none.column(state)[0] for state in _STATES):
            keys = sums.join(keys, none)
            none_by_mode = sums.minus(modes, _by_mode(entries))
            entries = sums.join(
                entries, sums.relabel(none_by_mode, [("", mode) for mode in none_by_mode.labels])
            )
    else:
        entries = _entries(session, _sql(group_by, all_tenants=all_tenants), params)
        overall, modes, keys = _overall(entries), _by_mode(entries), _by_key(entries)
    peaks = _peaks(session, group_by, all_tenants=all_tenants, params=params)
    if group_by in _PEAK_DIMENSIONS:
        overall_peak = _peaks(session, None, all_tenants=all_tenants, params=params).get("", 0)
    else:
        overall_peak = max(peaks.values(), default=0)
    seconds = (until - since).total_seconds()
    out_groups: list[dict[str, Any]] = []
    if group_by is not None:
        key_blocks, entry_blocks = Blocks(keys), Blocks(entries, whole=False)
        members: dict[Any, list[tuple[str, Blocks, int]]] = defaultdict(list)
        for i, (key, mode) in enumerate(entries.labels):
            members[key].append((mode, entry_blocks, i))
        rows = {key: i for i, key in enumerate(keys.labels)}
        for key in sorted(rows, key=lambda k: (str(type(k)), k)):
            span = seconds
            if group_by in _SPAN:
                start, end = max(key, since), min(key + _SPAN[group_by], until)
                span = (end - start).total_seconds()
            block = key_blocks.block(
                rows[key],
                members[key],
                seconds=span,
                # The jobs in no group have no peak kept (a peak is not a difference).
                peak=None if group_by == "group" and key == "" else peaks.get(key, 0),
            )
            block["key"] = _key_text(key)
            out_groups.append(block)
    mode_blocks = Blocks(modes, whole=False)
    by_mode = [(mode, mode_blocks, i) for i, mode in enumerate(modes.labels)]
    # In StatsOut's field order: the block's fields, then the answer's own.
    return {
        **Blocks(overall).block(0, by_mode, seconds=seconds, peak=overall_peak),
        "since": since,
        "until": until,
        "group_by": group_by,
        "lpr_resolution": RESOLUTION,
        "groups": out_groups,
    }
