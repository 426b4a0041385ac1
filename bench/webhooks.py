"""Webhook delivery benchmark: recording deliveries for finished jobs, then attempting them.

    python -m bench.webhooks [--jobs 10000] [--deliveries 2000] [--threads 8]

Starts an embedded Postgres under ``.thrifty/bench-webhooks`` on a free port and uses the
machine's Redis on database 12 (flushed at the end) for the hints. Runs in one process:

1. record: ``--jobs`` jobs of one group end in chunks of 1,000 (as a provider batch's results
   are applied), each chunk calling ``app.jobs.events.jobs_finished`` for a tenant with one
   endpoint subscribed to every event, and committing (which also sends the hints);
2. attempt: ``--threads`` threads call ``deliver`` on ``--deliveries`` of them, each signed
   and POSTed to a local receiver (a ThreadingHTTPServer answering 200) and committed.

Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".thrifty" / "bench-webhooks"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--deliveries", type=int, default=2_000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    pg_port = _free_port()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    os.environ.update(
        THRIFTY_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/bench",
        THRIFTY_REDIS_URL=redis_url,
        THRIFTY_HOME=str(WORK),
        THRIFTY_WEBHOOK_ALLOW_LOOPBACK="true",
    )
    sys.path.insert(0, str(ROOT))
    import redis
    from sqlalchemy import func, select, update

    from app.delivery import service as delivery_service
    from app.delivery import subscriptions
    from app.delivery.schemas import EndpointIn
    from app.jobs import events as job_events
    from app.kit.db import get_engine, get_sessionmaker
    from app.models import Job, JobGroup, JobState, WebhookAttempt, WebhookDelivery
    from app.stack.embedded import migrate
    from app.stack.postgres import EmbeddedPostgres
    from app.tenants import service as tenant_service

    postgres = EmbeddedPostgres(WORK / "pgdata", pg_port)
    postgres.start()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        postgres.ensure_database("bench", recreate=True)
        migrate(os.environ["THRIFTY_DATABASE_URL"])
        config = delivery_service.WebhookConfig.from_settings()
        make = get_sessionmaker()
        with make() as session:
            tenant = tenant_service.get_or_create_tenant(session, name="bench")
            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            subscriptions.create_endpoint(
                session, tenant=tenant, data=EndpointIn.model_validate({"url": url})
            )
            group = JobGroup(tenant_id=tenant.id, size=args.jobs)
            session.add(group)
            session.flush()
            jobs = [
                Job(
                    tenant_id=tenant.id,
                    group_id=group.id,
                    prompt=f"q{i}",
                    state=JobState.submitted,
                    job_metadata={"i": i},
                )
                for i in range(args.jobs)
            ]
            session.add_all(jobs)
            session.flush()
            ids = [job.id for job in jobs]
            session.commit()

        started = time.perf_counter()
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            with make() as session:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(chunk))
                    .values(
                        state=JobState.completed,
                        result="An answer of a few words.",
                        input_tokens=200,
                        output_tokens=40,
                    )
                )
                job_events.jobs_finished(session, job_ids=chunk, config=config)
                session.commit()
        record_seconds = time.perf_counter() - started
        with make() as session:
            recorded = session.scalar(select(func.count()).select_from(WebhookDelivery)) or 0
            pending = list(
                session.scalars(
                    select(WebhookDelivery.id)
                    .order_by(WebhookDelivery.created_at)
                    .limit(args.deliveries)
                )
            )

        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    delivery_id = pending.pop()
                with make() as session:
                    delivery_service.deliver(session, delivery_id=delivery_id, config=config)
                    session.commit()

        started = time.perf_counter()
        threads = [threading.Thread(target=work) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        attempt_seconds = time.perf_counter() - started
        with make() as session:
            durations = sorted(session.scalars(select(WebhookAttempt.duration_ms)))
            succeeded = session.scalar(
                select(func.count()).where(WebhookDelivery.state == "succeeded")
            )
        print(f"jobs={args.jobs}")
        print(f"deliveries_recorded={recorded}")
        print(f"record_seconds={record_seconds:.2f}")
        print(f"record_per_second={recorded / record_seconds:.0f}")
        print(f"attempted={len(durations)}")
        print(f"succeeded={succeeded}")
        print(f"threads={args.threads}")
        print(f"attempt_seconds={attempt_seconds:.2f}")
        print(f"attempts_per_second={len(durations) / attempt_seconds:.0f}")
        print(f"attempt_ms_p50={statistics.median(durations):.0f}")
        print(f"attempt_ms_p95={durations[int(len(durations) * 0.95) - 1]:.0f}")
    finally:
        server.shutdown()
        get_engine().dispose()
        postgres.stop()
        redis.Redis.from_url(redis_url).flushdb()


if __name__ == "__main__":
    main()
