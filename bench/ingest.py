"""Ingest benchmark: the cache-on path (the default) against bare Celery, in one run.

    python -m bench.ingest [--jobs 10000] [--concurrency 2] [--submit-size 1000]

Starts what it needs as ``bench.collector`` does (embedded Postgres on a free port, a private
redis-server or the machine's Redis on database 13, the simulator at zero latency, one
Celery worker with all queues and beat), then measures, each from the first submission until
every job has a terminal state in Postgres:

1. bare Celery: one trivial task per job (``bench.bare_celery``);
2. documents: ``--jobs`` distinct documents (summarise), through exact lookup, the
   near-duplicate index, routing, windows, the simulator and stored results (and cache
   entries);
3. prompts: ``--jobs`` distinct short prompts (questions from the paraphrase data), through
   exact lookup, one embedding per ingest chunk, HNSW search and the verifier, to stored
   results;
4. exact hits: the same documents submitted again; every one must be answered from the cache.

Documents are made of sentences of the news articles in ``../shared/data/docs`` (15 random
sentences each, so no two share more than a sentence by chance); without the data, of
generated sentences. It ends with ``key=value`` lines; ``lost`` counts jobs not completed
with a result, ``duplicated`` custom_ids the simulator received in more than one batch,
``worker_rss_mb`` the largest resident set of a worker process at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

from bench import stack
from bench.collector import INTERVALS, ROOT, WORK, _start_worker, bare_celery, sent_custom_ids

DATA = ROOT.parent / "shared" / "data"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def documents(count: int, *, seed: int = 3) -> list[str]:
    """``count`` distinct documents of 15 sentences each."""
    rng = random.Random(seed)
    sentences: list[str] = []
    for name in ("bbc_news_dev.jsonl", "cnndm_xsum_with_references.jsonl"):
        path = DATA / "docs" / name
        if path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                text = row.get("text") or row.get("article") or ""
                sentences += [s for s in _SENTENCE.split(text) if 40 <= len(s) <= 400]
    sentences = list(dict.fromkeys(sentences))
    if len(sentences) < 1000:
        words = [f"w{i}" for i in range(5000)]
        sentences = [" ".join(rng.choices(words, k=18)) + "." for _ in range(20_000)]
    made: list[str] = []
    for i in range(count):
        made.append(f"Report {i}\n\n" + " ".join(rng.sample(sentences, 15)))
    return made


def prompts(count: int, *, seed: int = 5) -> list[str]:
    """``count`` distinct short questions (QQP), or generated ones without the data."""
    path = DATA / "paraphrase" / "qqp_dev.jsonl"
    found: list[str] = []
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            found += [row["a"], row["b"]]
    distinct = list(dict.fromkeys(q.strip() for q in found if q.strip()))
    random.Random(seed).shuffle(distinct)
    distinct = distinct[:count]
    while len(distinct) < count:
        distinct.append(f"What is {len(distinct)} times {len(distinct) % 97 + 3}?")
    return distinct


def _rss_mb(root_pid: int) -> float:
    """The largest resident set (MB) among ``root_pid`` and its descendants."""
    parents: dict[int, int] = {}
    rss: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid = int(entry.name)
        parents[pid] = int(fields.get("PPid", "0").strip())
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) / 1024
    family = {root_pid}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return max((rss.get(pid, 0.0) for pid in family), default=0.0)


def phase(
    name: str, items: list[Any], *, submit_size: int, tenant: Any, session: Any
) -> dict[str, Any]:
    """Submit ``items`` in bulk submissions and wait until every job has ended."""
    from sqlalchemy import func, select

    from app.catalog.catalog import get_catalog
    from app.intake import submit as intake_submit
    from app.models import TERMINAL_STATES, Job, JobState

    start = time.perf_counter()
    groups: list[uuid.UUID] = []
    for first in range(0, len(items), submit_size):
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
    deadline = time.monotonic() + max(300.0, len(items) / 20)
    while ended < len(items) and time.monotonic() < deadline:
        time.sleep(0.05)
        ended = (
            session.scalar(select(func.count()).where(ours, Job.state.in_(TERMINAL_STATES))) or 0
        )
        session.rollback()
    elapsed = time.perf_counter() - start
    done = select(func.count()).where(
        ours, Job.state == JobState.completed, Job.result.is_not(None)
    )
    completed = session.scalar(done) or 0
    hits = session.scalar(done.where(Job.cache_hit.is_(True))) or 0
    session.rollback()
    rate = len(items) / elapsed
    print(f"  {name}: stored in {stored:.2f} s, {ended} ended after {elapsed:.2f} s "
          f"({rate:.1f}/s), {completed} completed, {hits} from the cache")  # fmt: skip
    return {"seconds": elapsed, "per_s": rate, "lost": len(items) - completed, "hits": hits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per phase")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--submit-size", type=int, default=1000, help="jobs per submission")
    args = parser.parse_args(argv)

    docs = documents(args.jobs)
    questions = prompts(args.jobs)
    figures: dict[str, Any] = {}
    simulator = ["-m", "app.cli", "simulator", "--validating-seconds", "0",
                 "--processing-seconds", "0"]  # fmt: skip
    with stack.running_stack(
        WORK, simulator_argv=simulator, fallback_redis_db=13, **INTERVALS
    ) as running:
        # Imported once the stack's environment is set: settings are read once per process.
        from app.jobs.schemas import JobIn
        from app.kit.db import get_sessionmaker
        from app.kit.queue import get_sender
        from app.tenants import service as tenant_service

        sup, env = running.sup, running.env
        print(f"bare Celery: {args.jobs} trivial tasks on {args.concurrency} processes")
        bare = bare_celery(sup, env, jobs=args.jobs, concurrency=args.concurrency)

        worker_argv = stack.thrifty_worker_argv(WORK, "bench-ingest", args.concurrency)
        started = time.perf_counter()
        child = _start_worker(sup, "bench-ingest-worker", worker_argv, env, get_sender())
        print(f"worker up in {time.perf_counter() - started:.1f} s (embedder loaded at start)")
        try:
            session = get_sessionmaker()()
            tenant = tenant_service.get_or_create_tenant(
                session, name=f"bench-{uuid.uuid4().hex[:6]}"
            )
            session.commit()
            doc_items = [JobIn(document=d, instruction="summarise") for d in docs]
            print(f"documents: {args.jobs} distinct")
            documents_run = phase("documents", doc_items, submit_size=args.submit_size,
                                  tenant=tenant, session=session)  # fmt: skip
            print(f"prompts: {args.jobs} distinct")
            prompt_items = [JobIn(prompt=q) for q in questions]
            prompts_run = phase("prompts", prompt_items, submit_size=args.submit_size,
                                tenant=tenant, session=session)  # fmt: skip
            print(f"exact hits: the {args.jobs} documents again")
            exact_run = phase("exact hits", doc_items, submit_size=args.submit_size,
                              tenant=tenant, session=session)  # fmt: skip
            rss = _rss_mb(child.pid)
            session.close()
        finally:
            sup.stop(child)
        sent = sent_custom_ids(env)

    figures = {
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "submit_size": args.submit_size,
        "document_cache_hits": documents_run["hits"],
        "prompt_cache_hits": prompts_run["hits"],
        "exact_hits": exact_run["hits"],
        "documents_per_s": round(documents_run["per_s"], 1),
        "prompts_per_s": round(prompts_run["per_s"], 1),
        "exact_hits_per_s": round(exact_run["per_s"], 1),
        "bare_celery_per_s": round(bare, 1),
        "documents_ratio": round(documents_run["per_s"] / bare, 2),
        "prompts_ratio": round(prompts_run["per_s"] / bare, 2),
        "exact_ratio": round(exact_run["per_s"] / bare, 2),
        "lost": documents_run["lost"] + prompts_run["lost"] + exact_run["lost"],
        "duplicated": sum(n - 1 for n in sent.values() if n > 1),
        "worker_rss_mb": round(rss),
    }
    for key, value in figures.items():
        print(f"{key}={value}")
    return 0 if figures["lost"] == 0 and figures["duplicated"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
