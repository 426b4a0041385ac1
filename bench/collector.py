"""Collector benchmark: N distinct jobs through route → window → simulator → stored result.

    python -m bench.collector [--jobs 10000] [--concurrency 2] [--submit-size 1000] [--rounds 3]

Starts everything it needs under ``.thrifty/bench`` (embedded Postgres on a free port, a
private redis-server when one is installed, else the machine's Redis on database 13, the
simulator with zero latency, Celery workers), runs ``--rounds`` rounds of two phases on the
same machine, stops everything, and ends with ``key=value`` lines (rates are medians over
the rounds, the other figures those of the median Thrifty round):

1. bare Celery: one trivial task per job (``bench.bare_celery``), from the first send until
   the last task ran;
2. Thrifty: the jobs are stored as a producer would send them, in bulk submissions of
   ``--submit-size`` jobs one after the other (each stored as ``POST /v1/jobs`` stores it),
   while the real worker routes, windows, submits, polls and applies results; the clock
   starts before the first submission and stops when every job has a terminal state in
   Postgres.

Lost jobs are those not ``completed`` at the end; duplicated ones are custom_ids the
simulator received in more than one batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections import Counter
from typing import Any

from bench import stack

ROOT = stack.ROOT
WORK = ROOT / ".thrifty" / "bench"


# The stages' beat intervals, shortened from the production defaults (1 s and 2 s) because
# the simulator answers at once.
INTERVALS = {
    "THRIFTY_COLLECT_INTERVAL_SECONDS": "0.2",
    "THRIFTY_POLL_INTERVAL_SECONDS": "0.25",
    "THRIFTY_POLL_BACKOFF_MAX_SECONDS": "0.5",
}
_start_worker = stack.start_worker


def bare_celery(sup: Any, env: dict[str, str], *, jobs: int, concurrency: int) -> float:
    """Tasks per second of bare Celery, one trivial task per job."""
    import redis

    from bench import bare_celery as bare

    client = redis.Redis.from_url(env["THRIFTY_REDIS_URL"])
    client.delete(bare.COUNTER)
    argv = ["-A", "bench.bare_celery", "worker", "-Q", bare.QUEUE, "-c", str(concurrency),
            "-n", "bench-bare@%h", "--loglevel", "WARNING"]  # fmt: skip
    child = _start_worker(sup, "bench-bare-worker", argv, env, bare.app)
    try:
        start = time.perf_counter()
        for i in range(jobs):
            bare.noop.apply_async(args=[i])
        while int(client.get(bare.COUNTER) or 0) < jobs:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
    finally:
        sup.stop(child)
    print(f"  bare Celery: {jobs} tasks in {elapsed:.2f} s")
    return jobs / elapsed


def thrifty(
    sup: Any, env: dict[str, str], *, jobs: int, concurrency: int, submit_size: int
) -> dict[str, Any]:
    """Push ``jobs`` distinct jobs through the real pipeline; figures and accounting."""
    from sqlalchemy import func, select

    from app.catalog.catalog import get_catalog
    from app.intake import submit as intake_submit
    from app.jobs.schemas import JobIn
    from app.kit.db import get_sessionmaker
    from app.kit.queue import get_sender
    from app.models import TERMINAL_STATES, Job, JobState, ProviderBatch
    from app.tenants import service as tenant_service

    argv = stack.thrifty_worker_argv(WORK, "bench-thrifty", concurrency)
    child = _start_worker(sup, "bench-thrifty-worker", argv, env, get_sender())
    try:
        session = get_sessionmaker()()
        tenant = tenant_service.get_or_create_tenant(session, name=f"bench-{uuid.uuid4().hex[:6]}")
        session.commit()
        run = uuid.uuid4().hex[:8]
        items = [
            JobIn(
                prompt=f"Benchmark question {i} of run {run}: what is {i} squared?",
                cache="bypass",
                metadata={"i": i},
            )
            for i in range(jobs)
        ]
        start = time.perf_counter()
        groups: list[uuid.UUID] = []
        for first in range(0, jobs, submit_size):
            response = intake_submit.submit(
                session,
                tenant=tenant,
                items=items[first : first + submit_size],
                as_group=True,
                catalog=get_catalog(),
            )
            session.commit()
            assert response.group_id is not None
            groups.append(response.group_id)
        stored = time.perf_counter() - start
        ours = Job.group_id.in_(groups)
        ended = 0
        deadline = time.monotonic() + max(120.0, jobs / 50)
        while ended < jobs and time.monotonic() < deadline:
            time.sleep(0.02)
            ended = (
                session.scalar(select(func.count()).where(ours, Job.state.in_(TERMINAL_STATES)))
                or 0
            )
            session.rollback()
        elapsed = time.perf_counter() - start
        print(f"  Thrifty: stored in {stored:.2f} s, {ended} jobs ended after {elapsed:.2f} s")

        completed = (
            session.scalar(select(func.count()).where(ours, Job.state == JobState.completed)) or 0
        )
        with_result = (
            session.scalar(
                select(func.count()).where(ours, Job.result.is_not(None), Job.cost_usd.is_not(None))
            )
            or 0
        )
        # Where the time went: when the last job was routed, claimed, sent and done.
        marks = session.execute(
            select(
                func.min(Job.created_at),
                func.max(Job.routed_at),
                func.max(Job.submitted_at),
                func.max(Job.completed_at),
            ).where(ours)
        ).one()
        ours_batches = select(Job.provider_batch_id).where(ours).distinct().scalar_subquery()
        batches = session.execute(
            select(ProviderBatch.request_count, ProviderBatch.created_at,
                   ProviderBatch.submitted_at, ProviderBatch.completed_at)
            .where(ProviderBatch.id.in_(ours_batches))
        ).all()  # fmt: skip
        session.close()
    finally:
        sup.stop(child)

    flush = [(b.submitted_at - b.created_at).total_seconds() for b in batches if b.submitted_at]
    created = marks[0]
    last_claim = max((b.created_at for b in batches), default=created)
    stages = {
        f"last_{name}_at_s": round((mark - created).total_seconds(), 2) if mark else None
        for name, mark in (
            ("routed", marks[1]),
            ("claimed", last_claim),
            ("submitted", marks[2]),
            ("completed", marks[3]),
        )
    }
    return {
        "jobs": jobs,
        "completed": completed,
        "lost": jobs - min(completed, with_result),
        "batches": len(batches),
        "mean_batch_size": round(statistics.mean(b.request_count for b in batches), 1)
        if batches
        else 0,
        "flush_overhead_ms_per_batch": round(1000 * statistics.mean(flush), 1) if flush else 0,
        "store_seconds": round(stored, 3),
        "seconds": round(elapsed, 3),
        "jobs_per_s": round(jobs / elapsed, 1),
        **stages,
    }


def sent_custom_ids(env: dict[str, str]) -> Counter[str]:
    """How many of the simulator's batches each custom_id was sent in."""
    import httpx

    sent: Counter[str] = Counter()
    headers = {"Authorization": "Bearer b"}
    with httpx.Client(base_url=env["THRIFTY_OPENAI_BASE_URL"] + "/", timeout=60) as http:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
            response = http.get("batches", params=params, headers=headers)
            response.raise_for_status()
            page = response.json()
            for batch in page["data"]:
                file = f"files/{batch['input_file_id']}/content"
                content = http.get(file, headers=headers).text
                sent.update(json.loads(line)["custom_id"] for line in content.splitlines() if line)
            if not page.get("has_more") or not page["data"]:
                break
            after = page["data"][-1]["id"]
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--concurrency", type=int, default=2, help="worker processes, the same for both phases"
    )
    parser.add_argument(
        "--submit-size", type=int, default=1000, help="jobs per submission (POST /v1/jobs)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of both phases; medians are reported"
    )
    args = parser.parse_args(argv)

    simulator = ["-m", "app.cli", "simulator", "--validating-seconds", "0",
                 "--processing-seconds", "0"]  # fmt: skip
    with stack.running_stack(
        WORK, simulator_argv=simulator, fallback_redis_db=13, **INTERVALS
    ) as running:
        sup, env = running.sup, running.env
        bare: list[float] = []
        runs: list[dict[str, Any]] = []
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}/{args.rounds}")
            print(f" bare Celery: {args.jobs} trivial tasks on {args.concurrency} processes")
            bare.append(bare_celery(sup, env, jobs=args.jobs, concurrency=args.concurrency))
            print(f" Thrifty: {args.jobs} jobs through the pipeline")
            runs.append(
                thrifty(
                    sup, env, jobs=args.jobs, concurrency=args.concurrency,
                    submit_size=args.submit_size,
                )
            )  # fmt: skip
            print(f" ratio {runs[-1]['jobs_per_s'] / bare[-1]:.2f}")
        sent = sent_custom_ids(env)

    # The median Thrifty round's details; rates are the medians of the rounds.
    figures = sorted(runs, key=lambda run: run["jobs_per_s"])[len(runs) // 2]
    jobs_per_s = statistics.median(run["jobs_per_s"] for run in runs)
    bare_per_s = statistics.median(bare)
    figures |= {
        "jobs": args.jobs,
        "lost": sum(run["lost"] for run in runs),
        "duplicated": sum(n - 1 for n in sent.values() if n > 1),
        "provider_requests": sum(sent.values()),
        "jobs_per_s": round(jobs_per_s, 1),
        "bare_celery_per_s": round(bare_per_s, 1),
        "ratio": round(jobs_per_s / bare_per_s, 2),
        "ratio_per_round": ",".join(
            f"{run['jobs_per_s'] / rate:.2f}" for run, rate in zip(runs, bare, strict=True)
        ),
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "submit_size": args.submit_size,
    }
    for key, value in figures.items():
        print(f"{key}={value}")
    return 0 if figures["lost"] == 0 and figures["duplicated"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
