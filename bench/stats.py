"""/v1/stats benchmark: answers from the rollups of N ended jobs' cost records.

    python -m bench.stats [--jobs 10000000] [--tenants 20] [--days 30] [--repeats 15]

Starts an embedded Postgres under ``.thrifty/bench-stats`` (``--pg-port``, default a free
port), migrates it, and loads ``--jobs`` cost records in SQL (``generate_series``: ended over
``--days`` days, half of them one tenant's, four models, two modes, two thirds in groups of one
tenant's jobs, cache hits, failures and cancellations, latencies from 0.3 s to hours). The
rollups and peaks are then built from the records, a day at a time, by the very SQL the ledger
runs as jobs end (``app.ledger.repository.add_stored_records``), so they hold exactly what the
running service would have kept. Every query shape of ``GET /v1/stats`` is timed ``--repeats``
times on the busiest tenant (ranges start and end mid-hour, so the partial hours are read from
the records) and for the operator's all-tenant view; the same-run baseline is the same totals
summed straight from the cost records. Each shape is timed as the endpoint answers it: the
JSON bytes of ``app.ledger.stats.stats_json``. ``--reuse`` times the database a run with the
same ``--home`` loaded instead of loading one again (10 million records take minutes); each
shape's CPU time (this process's and its Postgres backend's) is printed beside its wall
time, which on a shared machine also waits for CPU. Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".thrifty" / "bench-stats"
TARGET_MS = 200


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _configure(pg_port: int, work: Path) -> None:
    catalog = Path(tempfile.mkdtemp(prefix="thrifty-bench-")) / "catalog.toml"
    shutil.copy(ROOT / "app" / "catalog" / "catalog.toml", catalog)
    os.environ.update(
        THRIFTY_ENVIRONMENT="development",
        THRIFTY_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/thrifty_bench",
        THRIFTY_CATALOG_PATH=str(catalog),
        THRIFTY_HOME=str(work),
    )


# Per-job values from the row number n and random(); money from the catalog's list prices
# (gpt-4o is the naive model), so naive - actual and the layers add up as in the service.
LOAD_SQL = """
INSERT INTO cost_records (job_id, tenant_id, group_id, state, provider, model, mode,
    answered_by, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens,
    naive_usd, routed_usd, batched_usd, prompt_cached_usd, actual_usd, saved_cache_usd,
    saved_coalescing_usd, saved_routing_usd, saved_batching_usd, saved_prompt_cache_usd,
    created_at, ended_at, deadline, latency_seconds)
SELECT gen_random_uuid(), t.tenant_id, t.group_id, t.state, 'openai', t.model, t.mode,
    t.answered_by, t.input_tokens, 0, 0, t.output_tokens,
    t.naive, t.routed, t.batched, t.batched,
    CASE WHEN t.answered_by = 'provider' THEN t.batched ELSE 0 END,
    CASE WHEN t.answered_by LIKE 'cache%%' THEN t.batched ELSE 0 END, 0,
    t.naive - t.routed, t.routed - t.batched, 0,
    t.ended_at - make_interval(secs => t.latency), t.ended_at,
    CASE WHEN t.n %% 5 = 0 THEN t.ended_at + interval '1 minute' END,
    CASE WHEN t.state = 'completed' THEN t.latency END
FROM (
    SELECT s.*, CASE WHEN s.state = 'completed' THEN s.naive0 ELSE 0 END AS naive,
        CASE WHEN s.state = 'completed' THEN s.routed0 ELSE 0 END AS routed,
        CASE WHEN s.state <> 'completed' THEN 0
             WHEN s.mode = 'batch' THEN s.routed0 / 2 ELSE s.routed0 END AS batched
    FROM (
        SELECT n,
            tenants[1 + x.tenant] AS tenant_id,
            -- A third of the jobs in no group; the rest in groups of one tenant's jobs.
            CASE WHEN n %% 3 <> 0 THEN md5(x.tenant || ':' || n / 5000)::uuid END AS group_id,
            CASE WHEN n %% 100 < 97 THEN 'completed' WHEN n %% 100 < 99 THEN 'failed'
                 ELSE 'cancelled' END AS state,
            (ARRAY['gpt-4o-mini', 'gpt-4.1-mini', 'gpt-4o', 'claude-3-5-haiku-latest'])[1 + n %% 4]
                AS model,
            CASE WHEN n %% 7 = 0 THEN 'realtime' ELSE 'batch' END AS mode,
            CASE WHEN n %% 100 >= 97 THEN NULL WHEN n %% 10 = 1 THEN 'cache_exact'
                 WHEN n %% 20 = 3 THEN 'cache_semantic' ELSE 'provider' END AS answered_by,
            200 + (n * 7919) %% 3000 AS input_tokens, 20 + (n * 104729) %% 400 AS output_tokens,
            ((200 + (n * 7919) %% 3000) * 2.5 + (20 + (n * 104729) %% 400) * 10.0)
                / 1000000 AS naive0,
            ((200 + (n * 7919) %% 3000) * (ARRAY[0.15, 0.40, 2.50, 0.80])[1 + n %% 4]
             + (20 + (n * 104729) %% 400) * (ARRAY[0.60, 1.60, 10.0, 4.00])[1 + n %% 4])
                / 1000000 AS routed0,
            -- Jobs end in submission order, a group's within minutes of each other.
            %(start)s::timestamptz + make_interval(
                secs => %(span)s * (n::float8 / %(jobs)s) + 120 * random()) AS ended_at,
            CASE WHEN n %% 7 = 0 THEN 0.3 + 5 * random() ELSE 5 + 3600 * random() ^ 3 END
                AS latency
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n,
             LATERAL (SELECT CASE WHEN n %% 2 = 0 THEN 0
                                  ELSE (n / 2) %% %(tenant_count)s END AS tenant) AS x,
             (SELECT %(tenants)s::uuid[] AS tenants) AS ids
    ) AS s
) AS t
"""


def _load(session: Any, *, jobs: int, tenants: list[Any], days: int, now: datetime) -> None:
    from sqlalchemy import text

    from app.ledger import repository

    connection = session.connection().connection.driver_connection
    start = now - timedelta(days=days)
    chunk = 1_000_000
    with connection.cursor() as cursor:
        # Bulk load: the primary key and indexes are built once, after the rows.
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute("ALTER TABLE cost_records DROP CONSTRAINT pk_cost_records")
        cursor.execute("DROP INDEX ix_cost_records_tenant_ended_at, ix_cost_records_ended_at")
        for first in range(1, jobs + 1, chunk):
            last = min(jobs, first + chunk - 1)
            began = time.perf_counter()
            params = {"first": first, "last": last, "start": start, "jobs": jobs,
                      "span": days * 86400.0 - 120, "tenants": tenants,
                      "tenant_count": len(tenants)}  # fmt: skip
            cursor.execute(LOAD_SQL, params)
            connection.commit()
            print(f"  cost records {last:,}/{jobs:,} ({time.perf_counter() - began:.1f} s)")
        began = time.perf_counter()
        cursor.execute("ALTER TABLE cost_records ADD CONSTRAINT pk_cost_records "
                       "PRIMARY KEY (job_id)")  # fmt: skip
        cursor.execute("CREATE INDEX ix_cost_records_tenant_ended_at ON cost_records "
                       "(tenant_id, ended_at)")  # fmt: skip
        cursor.execute("CREATE INDEX ix_cost_records_ended_at ON cost_records (ended_at)")
        connection.commit()
        print(f"  primary key and indexes built in {time.perf_counter() - began:.1f} s")
    # The rollups and peaks, a day of records at a time, by the ledger's own maintenance SQL.
    began = time.perf_counter()
    session.execute(text("SET work_mem = '64MB'"))
    session.execute(text("SET synchronous_commit = off"))
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < now + timedelta(days=1):
        repository.add_stored_records(session, since=day, until=day + timedelta(days=1))
        session.commit()
        day += timedelta(days=1)
    session.execute(text("ANALYZE"))
    session.commit()
    print(f"  rollups and peaks built in {time.perf_counter() - began:.1f} s")


def _time(call: Any, repeats: int) -> tuple[float, float, Any]:
    samples = []
    result = None
    for _ in range(repeats):
        began = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95, result


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_ms(call: Any, repeats: int, backend: int) -> float:
    """The mean CPU time of ``call``, this process's and its Postgres backend's: what it
    costs whatever the machine's load (the wall time on a shared machine waits for CPU)."""
    mine, theirs = time.process_time(), _cpu_seconds(backend)
    for _ in range(repeats):
        call()
    used = time.process_time() - mine + _cpu_seconds(backend) - theirs
    return used * 1000 / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--pg-port", type=int, default=0)
    parser.add_argument("--home", default=str(WORK), help="where its Postgres keeps its data")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="time the database a run with the same --home already loaded (its --jobs, "
        "--tenants and --days are kept in HOME/loaded.json; new migrations are applied, "
        "which fill any new rollup from the records) instead of loading it again",
    )
    args = parser.parse_args()
    pg_port = args.pg_port or _free_port()
    work = Path(args.home)
    _configure(pg_port, work)
    from sqlalchemy import func, select, text
    from sqlalchemy.orm import Session

    from app.kit.db import get_engine
    from app.ledger import stats as ledger_stats
    from app.ledger.schemas import StatsOut
    from app.models import CostRecord, Tenant, utcnow
    from app.stack.embedded import migrate
    from app.stack.postgres import EmbeddedPostgres

    work.mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(work / "pgdata", pg_port)
    print(f"starting Postgres on {pg_port}")
    postgres.start()
    marker = work / "loaded.json"
    loaded = json.loads(marker.read_text()) if args.reuse and marker.exists() else None
    if args.reuse and loaded is None:
        print(f"no loaded database in {work} (no {marker.name}): loading one")
    try:
        postgres.ensure_database("thrifty_bench", recreate=loaded is None)
        began = time.perf_counter()
        migrate(os.environ["THRIFTY_DATABASE_URL"])
        migrate_s = time.perf_counter() - began
        with Session(get_engine()) as session:
            if loaded is not None:
                args.jobs, args.tenants, args.days = (loaded[k] for k in ("jobs", "tenants",
                                                                          "days"))  # fmt: skip
                now = datetime.fromisoformat(loaded["now"])
                ids = [UUID(value) for value in loaded["tenants_ids"]]
                load_s = float(loaded["load_s"])
                print(f"reusing {args.jobs:,} jobs loaded at {now} (migrations: {migrate_s:.1f} s)")
            else:
                marker.unlink(missing_ok=True)
                now = utcnow().replace(minute=37, second=11, microsecond=0)
                tenants = [Tenant(name=f"bench-{i}") for i in range(args.tenants)]
                session.add_all(tenants)
                session.commit()
                ids = [t.id for t in tenants]
                began = time.perf_counter()
                print(f"loading {args.jobs:,} jobs' cost records over {args.days} days")
                _load(session, jobs=args.jobs, tenants=ids, days=args.days, now=now)
                load_s = time.perf_counter() - began
                marker.write_text(json.dumps({
                    "jobs": args.jobs, "tenants": args.tenants, "days": args.days,
                    "now": now.isoformat(), "tenants_ids": [str(i) for i in ids],
                    "load_s": round(load_s, 1),
                }))  # fmt: skip
            rollup_rows = session.scalar(text("SELECT count(*) FROM cost_rollups"))
            day_rollup_rows = session.scalar(text("SELECT count(*) FROM cost_day_rollups"))
            group_rollup_rows = session.scalar(text("SELECT count(*) FROM cost_group_rollups"))
            peak_rows = session.scalar(text("SELECT count(*) FROM cost_peaks"))
            busiest = ids[0]
            busiest_jobs = session.scalar(
                select(func.count()).where(CostRecord.tenant_id == busiest)
            )
            until = now - timedelta(minutes=3)
            month = until - timedelta(days=args.days - 1, minutes=41)
            cases: list[tuple[str, Any, datetime, datetime, Any]] = [
                ("range_30d", busiest, month, until, None),
                ("range_30d_by_model", busiest, month, until, "model"),
                ("range_30d_by_mode", busiest, month, until, "mode"),
                ("range_30d_by_day", busiest, month, until, "day"),
                ("range_30d_by_group", busiest, month, until, "group"),
                ("range_7d_by_hour", busiest, until - timedelta(days=7), until, "hour"),
                ("range_24h", busiest, until - timedelta(hours=24), until, None),
                ("all_tenants_30d", None, month, until, None),
                ("all_tenants_30d_by_model", None, month, until, "model"),
                ("all_tenants_30h_by_group", None, until - timedelta(hours=30), until, "group"),
            ]
            figures: dict[str, Any] = {}
            worst = 0.0
            backend = int(session.scalar(text("SELECT pg_backend_pid()")) or 0)
            print(f"timing {len(cases)} query shapes x {args.repeats}")
            for name, tenant_id, since, end, group_by in cases:
                # What the endpoint does: the answer's JSON bytes (``stats.stats_json``).
                def answer(
                    t: Any = tenant_id, s: datetime = since, e: datetime = end, g: Any = group_by
                ) -> bytes:
                    return ledger_stats.stats_json(
                        session, tenant_id=t, since=s, until=e, group_by=g
                    )

                median, p95, body = _time(answer, args.repeats)
                worst = max(worst, p95)
                cpu_ms = _cpu_ms(answer, args.repeats, backend)
                out = StatsOut.model_validate_json(body)
                layers = out.savings_usd
                total = (layers.cache + layers.coalescing + layers.routing + layers.batching
                         + layers.prompt_cache)  # fmt: skip
                assert total == out.naive_cost_usd - out.cost_usd, name
                print(f"  {name:<26} median {median:7.1f} ms  p95 {p95:7.1f} ms  "
                      f"cpu {cpu_ms:6.1f} ms  ({out.jobs['total']:,} jobs, "
                      f"{len(out.groups)} groups)")  # fmt: skip
                figures[f"{name}_ms"] = round(median, 1)
                figures[f"{name}_p95_ms"] = round(p95, 1)
                figures[f"{name}_cpu_ms"] = round(cpu_ms, 1)
            # The same-run baseline: the 30-day totals summed from the records themselves.
            sums = (func.count(), func.sum(CostRecord.actual_usd), func.sum(CostRecord.naive_usd))
            scan = select(*sums).where(
                CostRecord.tenant_id == busiest,
                CostRecord.ended_at >= month,
                CostRecord.ended_at < until,
            )
            session.execute(text("SET max_parallel_workers_per_gather = 2"))
            baseline, _, row = _time(lambda: session.execute(scan).one(), 3)
            check = ledger_stats.stats(session, tenant_id=busiest, since=month, until=until)
            assert check.jobs["total"] == row[0], (check.jobs, row[0])
            assert check.cost_usd == row[1].quantize(check.cost_usd), (check.cost_usd, row[1])
            print(f"  baseline: the same 30-day totals summed from the records: {baseline:.0f} ms")
            database_mb = session.scalar(text("SELECT pg_database_size(current_database())"))
    finally:
        get_engine().dispose()
        postgres.stop()
    result = {
        "jobs": args.jobs,
        "tenants": args.tenants,
        "days": args.days,
        "busiest_tenant_jobs": busiest_jobs,
        "rollup_rows": rollup_rows,
        "day_rollup_rows": day_rollup_rows,
        "group_rollup_rows": group_rollup_rows,
        "peak_rows": peak_rows,
        "load_s": round(load_s, 1),
        "database_mb": round((database_mb or 0) / 1e6),
        **figures,
        "worst_p95_ms": round(worst, 1),
        "baseline_scan_ms": round(baseline, 1),
        "target_ms": TARGET_MS,
        "under_target": worst < TARGET_MS,
    }
    for key, value in result.items():
        print(f"{key}={value}")
    return 0 if worst < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
