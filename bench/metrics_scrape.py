"""Operator metrics scrape benchmark: ``GET /metrics`` with N jobs stored.

    python -m bench.metrics_scrape [--jobs 1000000] [--processes 8] [--scrapes 50]

Starts an embedded Postgres under ``.thrifty/bench-metrics``, loads ``--jobs`` jobs in SQL
(``generate_series``: 99 % ended, the rest queued or waiting in twelve windows), one provider
batch per 1,000 jobs and a webhook delivery per job (nearly all succeeded), lets
``--processes`` processes count events into one multiprocess directory as the stack's
workers do (jobs finished, LPR histogram, savings, cache lookups, provider requests), starts
the metrics server (``python -m app.metrics``) on it and times ``--scrapes`` scrapes over
HTTP. The same-run baseline is the scrape main had before the ledger: counting jobs by state
and summing their cost over the whole jobs table. Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".thrifty" / "bench-metrics"
TARGET_MS = 50

JOBS_SQL = """
INSERT INTO jobs (id, tenant_id, state, prompt, metadata, cache_hit, cache_mode,
    requested_mode, priority, attempts, created_at, updated_at, provider, model, mode,
    routed_at, completed_at, input_tokens, output_tokens, cost_usd, naive_cost_usd,
    provider_batch_id)
SELECT gen_random_uuid(), %(tenant)s, s.state::job_state, 'question ' || n, '{}', false,
    'default', 'auto', 0, 0, now() - interval '1 hour', now() - interval '1 minute',
    'openai', (ARRAY['gpt-4o-mini', 'gpt-4.1-mini', 'gpt-4o'])[1 + n %% 3],
    CASE WHEN n %% 2 = 0 THEN 'batch' ELSE 'realtime' END,
    now() - make_interval(secs => n %% 600), CASE WHEN s.ended THEN now() END,
    CASE WHEN s.ended THEN 300 END, CASE WHEN s.ended THEN 80 END,
    CASE WHEN s.ended THEN 0.0001 END, CASE WHEN s.ended THEN 0.0015 END,
    CASE WHEN s.ended THEN batches[1 + (n / 1000) %% array_length(batches, 1)] END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n,
     LATERAL (SELECT CASE WHEN n %% 100 = 0 THEN 'waiting' WHEN n %% 500 = 1 THEN 'queued'
                          WHEN n %% 50 = 2 THEN 'failed' ELSE 'completed' END AS state) AS s0,
     LATERAL (SELECT s0.state, s0.state NOT IN ('waiting', 'queued') AS ended) AS s,
     (SELECT %(batches)s::uuid[] AS batches) AS b
"""

DELIVERIES_SQL = """
INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, job_id, event, dedup_key,
    message_id, url, body, state, attempt_count, created_at, updated_at)
SELECT gen_random_uuid(), %(tenant)s, %(endpoint)s, id, 'job.completed', 'job-' || id,
    'msg_' || md5(id::text), 'https://example.com/hook', '{}',
    CASE WHEN random() < 0.001 THEN 'pending' ELSE 'succeeded' END::webhook_delivery_state,
    1, now(), now()
FROM jobs WHERE completed_at IS NOT NULL
"""

# A worker process's events, as app/ledger/metrics.py and the other domains count them.
CHILD = """
import random, sys, uuid
from datetime import timedelta
from app.cache.metrics import count_lookups
from app.ledger import metrics
from app.ledger.pricing import CostChain, TokenUsage
from app.ledger.rows import EndedJob
from app.models import utcnow
from app.providers.metrics import PROVIDER_REQUESTS
from decimal import Decimal
now = utcnow()
jobs = [EndedJob(uuid.uuid4(), uuid.uuid4(), None, random.choice(["completed", "failed"]),
                 "openai", random.choice(["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"]),
                 random.choice(["batch", "realtime"]), TokenUsage(300, 80),
                 CostChain(Decimal("0.0015"), Decimal("0.0002"), Decimal("0.0001"),
                           Decimal("0.0001"), Decimal("0.0001")),
                 now - timedelta(seconds=random.random() * 3000), now, None)
        for _ in range(int(sys.argv[1]))]
metrics.observe(jobs)
count_lookups(exact=100, semantic=20, misses=500)
for outcome in ("ok", "http_429", "http_500", "transport_error"):
    PROVIDER_REQUESTS.labels("openai_batch", outcome).inc(7)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--pg-port", type=int, default=0)
    parser.add_argument("--metrics-port", type=int, default=0)
    args = parser.parse_args()
    pg_port = args.pg_port or _free_port()
    multiproc = Path(tempfile.mkdtemp(prefix="thrifty-bench-metrics-"))
    catalog = multiproc.parent / f"{multiproc.name}-catalog.toml"
    shutil.copy(ROOT / "app" / "catalog" / "catalog.toml", catalog)
    env = dict(
        os.environ,
        THRIFTY_ENVIRONMENT="development",
        THRIFTY_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/thrifty_bench",
        THRIFTY_CATALOG_PATH=str(catalog),
        THRIFTY_HOME=str(WORK),
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    os.environ.update(env)
    import httpx
    from sqlalchemy import func, select, text
    from sqlalchemy.orm import Session

    from app.kit.db import get_engine
    from app.models import Job, Tenant, WebhookEndpoint
    from app.stack.embedded import migrate
    from app.stack.postgres import EmbeddedPostgres
    from app.stack.processes import http_ok, wait_until

    WORK.mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(WORK / "pgdata", pg_port)
    print(f"starting Postgres on {pg_port}")
    postgres.start()
    server = None
    try:
        postgres.ensure_database("thrifty_bench", recreate=True)
        migrate(env["THRIFTY_DATABASE_URL"])
        with Session(get_engine()) as session:
            tenant = Tenant(name="bench")
            session.add(tenant)
            session.flush()
            endpoint = WebhookEndpoint(
                tenant_id=tenant.id,
                url="https://example.com/hook",
                events=["job.completed"],
                secret="whsec_" + os.urandom(8).hex(),
            )
            session.add(endpoint)
            session.commit()
            began = time.perf_counter()
            batches = [
                session.scalar(
                    text(
                        "INSERT INTO provider_batches (id, provider, model, mode, state, "
                        "request_count, created_at, updated_at, polls, submit_attempts) VALUES "
                        "(gen_random_uuid(), 'openai', 'gpt-4o-mini', 'batch', 'completed', "
                        "1000, now(), now(), 1, 1) RETURNING id"
                    )
                )
                for _ in range(max(1, args.jobs // 1000))
            ]
            session.commit()
            connection = session.connection().connection.driver_connection
            with connection.cursor() as cursor:
                for first in range(1, args.jobs + 1, 250_000):
                    last = min(args.jobs, first + 249_999)
                    params = {"tenant": tenant.id, "first": first, "last": last,
                              "batches": batches}  # fmt: skip
                    cursor.execute(JOBS_SQL, params)
                    connection.commit()
                    print(f"  jobs {last:,}/{args.jobs:,}")
                cursor.execute(DELIVERIES_SQL, {"tenant": tenant.id, "endpoint": endpoint.id})
                connection.commit()
            session.execute(text("ANALYZE"))
            load_s = time.perf_counter() - began
            stored = session.scalar(select(func.count()).select_from(Job))
            print(f"loaded {stored:,} jobs in {load_s:.0f} s")
            # The old scrape: every job counted by state and summed, at every scrape.
            old = select(Job.state, func.count()).group_by(Job.state)
            costs = select(func.sum(Job.cost_usd), func.sum(Job.naive_cost_usd))
            samples = []
            for _ in range(5):
                start = time.perf_counter()
                session.execute(old).all()
                session.execute(costs).one()
                samples.append((time.perf_counter() - start) * 1000)
            baseline = statistics.median(samples)
        for _ in range(args.processes):
            subprocess.run([sys.executable, "-c", CHILD, "500"], env=env, cwd=ROOT, check=True)
        port = args.metrics_port or _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "app.metrics", "--port", str(port)], env=env, cwd=ROOT
        )
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: http_ok(url), timeout=60, what="the metrics server")
        times = []
        with httpx.Client(timeout=30) as client:
            body = client.get(url).text
            for _ in range(args.scrapes):
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200
        times.sort()
        for name in ("thrifty_job_latency_seconds_bucket", "thrifty_queue_depth",
                     "thrifty_jobs_open", "thrifty_savings_usd"):  # fmt: skip
            assert name in body, name
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        median = statistics.median(times)
        print(f"scrape: median {median:.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms")
        print(f"baseline: the old full-table scrape queries {baseline:.0f} ms")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        get_engine().dispose()
        postgres.stop()
        shutil.rmtree(multiproc, ignore_errors=True)
    result = {
        "jobs": stored,
        "processes": args.processes,
        "metric_files": args.processes * 3,
        "scrapes": args.scrapes,
        "scrape_median_ms": round(statistics.median(times), 1),
        "scrape_p95_ms": round(p95, 1),
        "scrape_max_ms": round(times[-1], 1),
        "baseline_full_scan_ms": round(baseline, 1),
        "response_bytes": len(body),
        "target_ms": TARGET_MS,
        "under_target": p95 < TARGET_MS,
    }
    for key, value in result.items():
        print(f"{key}={value}")
    return 0 if p95 < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
