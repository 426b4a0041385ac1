"""The trace benchmark: a realistic bulk workload through the whole stack, priced and timed.

    python -m bench.trace [--jobs 1000] [--seed 1] [--spread 60] [--processing-seconds 20]

Builds the workload of ``bench.trace_workload`` from ``../shared/data/docs`` and
``../shared/data/routing`` (articles to summarise under long shared house-style system
prompts, resubmitted, duplicated inside a submission, syndicated with light edits, other
articles on the same topic, copies with a changed figure; short questions of mixed
difficulty under a long shared assistant prompt, some asked again; deadlines from minutes to
a day and a bit, or none), and sends it through the stack as ``bench.ingest`` does (its own
Postgres, Redis, one worker with every queue and beat, submissions stored as ``POST
/v1/jobs`` stores them, cache on) in submissions spread over ``--spread`` seconds. The
simulator (``bench.simulator_log``: the simulator plus a log of realtime calls) answers with
realistic shapes and scaled-down times: ``--latency-seconds`` on every API call, batches
validating 2 s, in progress ``--processing-seconds``, finalizing 1 s.

It ends with ``key=value`` lines. From the ledger (``GET /v1/stats`` over the run):
``cpr_usd``, ``naive_cpr_usd``, ``saved_*``. Computed here in Decimal from the cost records'
token counts and the catalog's prices: ``batch_only_cpr_usd`` (every request through the
Batch API to the default tier's model, no cache, coalescing or prompt caching) and
``oracle_cpr_usd`` (each class of legitimately equal requests paid once, on the cheapest path
one of its members took, with every shared system prompt read from the provider's prompt
cache after its first use). From the jobs: ``lpr_*`` (submission to result, completed jobs;
per mode too), ``deadlines_met``, ``throughput_jobs_per_s``, ``wrong_cache_hits`` (a hit or
coalesced follower whose source is another class), ``lost`` (not completed with a result).
From the simulator: ``duplicated`` (a custom_id in two batches, or one realtime request body
sent twice) and ``repeated_requests`` (an identical request body reaching the provider more
than once by any path: a missed repeat, priced in the gap to the oracle). Then the targets.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import numpy as np

from bench.simulator_log import request_digest
from bench.stack import DATA, ROOT, running_stack, start_worker, thrifty_worker_argv
from bench.trace_workload import Item, build

WORK = ROOT / ".thrifty" / "bench-trace"
LEGIT_REPEATS = {"resubmission", "duplicate", "syndicated", "question_repeat"}
OPENAI_MIN_PREFIX = 1024  # OpenAI caches prompts of 1,024 tokens or more


def say(message: str) -> None:
    print(message, flush=True)


def submit_trace(
    submissions: list[list[Item]], *, spread: float, tenant: Any, session: Any
) -> tuple[dict[uuid.UUID, Item], datetime]:
    """Store each submission at its time; the jobs' ids mapped to their items, and the start."""
    from app.catalog.catalog import get_catalog
    from app.intake import submit as intake_submit
    from app.jobs.schemas import JobIn

    ids: dict[uuid.UUID, Item] = {}
    started = datetime.now(UTC)
    clock = time.monotonic()
    gap = spread / max(1, len(submissions) - 1)
    for number, items in enumerate(submissions):
        time.sleep(max(0.0, clock + number * gap - time.monotonic()))
        now = datetime.now(UTC)
        jobs = [
            JobIn(
                **item.job,
                deadline=None
                if item.deadline_after is None
                else now + timedelta(seconds=item.deadline_after),
                metadata={"trace": item.index, "kind": item.kind},
            )
            for item in items
        ]
        response = intake_submit.submit(
            session, tenant=tenant, items=jobs, as_group=True, catalog=get_catalog()
        )
        session.commit()
        for item, job in zip(items, response.jobs, strict=True):
            ids[job.id] = item
        say(f"  submission {number + 1}/{len(submissions)}: {len(items)} jobs")
    return ids, started


def wait_until_ended(session: Any, ids: set[uuid.UUID], *, timeout: float) -> None:
    from sqlalchemy import func, select

    from app.models import TERMINAL_STATES, Job

    deadline = time.monotonic() + timeout
    ended, last = 0, -1
    while time.monotonic() < deadline:
        ended = (
            session.scalar(
                select(func.count()).where(Job.id.in_(ids), Job.state.in_(TERMINAL_STATES))
            )
            or 0
        )
        session.rollback()
        if ended != last:
            say(f"  {ended}/{len(ids)} jobs ended")
            last = ended
        if ended >= len(ids):
            return
        time.sleep(1.0)
    say(f"  gave up waiting: {ended}/{len(ids)} ended")


def provider_requests(simulator_url: str) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """What reached the simulator: batches per custom_id, batch line bodies and realtime
    bodies by digest."""
    custom_ids: Counter[str] = Counter()
    batch_bodies: Counter[str] = Counter()
    headers = {"Authorization": "Bearer bench"}
    with httpx.Client(base_url=simulator_url + "/", headers=headers, timeout=120) as http:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
            page = http.get("batches", params=params).raise_for_status().json()
            for batch in page["data"]:
                content = http.get(f"files/{batch['input_file_id']}/content").text
                for line in content.split("\n"):
                    if line.strip():
                        row = json.loads(line)
                        custom_ids[row["custom_id"]] += 1
                        batch_bodies[request_digest(row["body"])] += 1
            if not page.get("has_more") or not page["data"]:
                break
            after = page["data"][-1]["id"]
        log = httpx.get(simulator_url.removesuffix("/v1") + "/_bench/realtime", timeout=60)
        realtime: Counter[str] = Counter(log.raise_for_status().json()["digests"])
    return custom_ids, batch_bodies, realtime


def request_digests(session: Any, ids: dict[uuid.UUID, Item]) -> dict[uuid.UUID, tuple[str, str]]:
    """The provider request (digest, mode) of every job the provider answered."""
    from sqlalchemy import select

    from app.kit.prompts import build_messages
    from app.models import Job, JobState

    out: dict[uuid.UUID, tuple[str, str]] = {}
    query = select(Job).where(
        Job.id.in_(set(ids)),
        Job.state == JobState.completed,
        Job.cache_hit.is_(False),
        Job.coalesced_with.is_(None),
    )
    for job in session.scalars(query):
        body = {"model": job.model, "messages": build_messages(job),
                "max_tokens": job.max_output_tokens, "temperature": job.temperature}  # fmt: skip
        out[job.id] = (request_digest(body), job.mode.value if job.mode else "none")
    session.rollback()
    return out


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


def figures(
    ids: dict[uuid.UUID, Item],
    rows: list[Any],
    records: dict[uuid.UUID, Any],
    stats: dict[str, Any],
) -> dict[str, Any]:
    """Every figure but the provider's, from the jobs, their cost records and the stats."""
    from app.catalog.catalog import get_catalog
    from app.ledger.pricing import QUANTUM, TokenUsage, paid_price
    from app.models import JobMode
    from app.simulator.summarise import count_tokens

    catalog = get_catalog()
    default = min(
        (m for m in catalog.models if m.tier == catalog.default_tier),
        key=lambda m: m.input_per_mtok + m.output_per_mtok,
    )
    by_id = {row.id: row for row in rows}
    completed = [r for r in rows if r.state == "completed" and r.result is not None]
    n = max(1, len(completed))

    batch_only = sum(
        (paid_price(default, JobMode.batch, TokenUsage(rec.input_tokens, rec.output_tokens))
         for rec in records.values()),
        Decimal(0),
    )  # fmt: skip

    # The oracle: each class paid once, at its cheapest member's path, a shared prefix read
    # from the provider's prompt cache once it was sent to that model before. Beside it, the
    # same oracle without prompt caching, and what this run would have paid had every shared
    # prefix been cached (how much of the gap is the prompt cache's).
    def price(rec: Any, cached_tokens: int) -> Decimal:
        mode = JobMode(rec.mode) if rec.mode else None
        usage = TokenUsage(
            rec.input_tokens, rec.output_tokens, min(cached_tokens, rec.input_tokens)
        )
        return paid_price(catalog.model(rec.model), mode, usage)

    def prefix_tokens(item: Item) -> int:
        tokens = count_tokens(item.job["system"]) if item.job.get("system") else 0
        return tokens if tokens >= OPENAI_MIN_PREFIX else 0

    members: dict[str, list[uuid.UUID]] = defaultdict(list)
    in_order = sorted(ids, key=lambda job_id: ids[job_id].index)
    for job_id in in_order:
        members[ids[job_id].cls].append(job_id)
    seen: set[tuple[str, str]] = set()
    oracle = oracle_uncached = Decimal(0)
    for cls_ids in sorted(members.values(), key=lambda m: ids[m[0]].index):
        first = ids[cls_ids[0]]
        prefix = str(first.job.get("system"))
        paths = [records[j] for j in cls_ids if j in records and records[j].model
                 and catalog.has_model(records[j].model)]  # fmt: skip
        if not paths:
            continue
        options = [(price(r, prefix_tokens(first) if (prefix, r.model) in seen else 0), r.model)
                   for r in paths]  # fmt: skip
        cost, model = min(options)
        oracle += cost
        oracle_uncached += min(price(r, 0) for r in paths)
        seen.add((prefix, model))
    seen.clear()
    prefix_cached = Decimal(0)
    for job_id in in_order:
        rec = records.get(job_id)
        if rec is None or rec.answered_by != "provider" or not catalog.has_model(rec.model):
            continue
        key = (str(ids[job_id].job.get("system")), rec.model)
        prefix_cached += price(rec, prefix_tokens(ids[job_id]) if key in seen else 0)
        seen.add(key)

    wrong = 0
    wrongs: list[str] = []
    for row in completed:
        source = row.cached_from_job_id if row.cache_hit else row.coalesced_with
        if source is not None and (source not in ids or ids[source].cls != ids[row.id].cls):
            wrong += 1
            how = "hit" if row.cache_hit else "coalesced"
            was = ids.get(source)
            wrongs.append(
                f"{ids[row.id].kind} {ids[row.id].cls} {how} from "
                + (f"{was.kind} {was.cls} (submission {was.submission})" if was else f"{source}")
                + f", submission {ids[row.id].submission}"
            )
    answered = Counter(
        ("hit" if r.cache_hit else "coalesced" if r.coalesced_with else "paid", ids[r.id].kind)
        for r in completed
    )
    missed = sum(
        n for (how, kind), n in answered.items() if how == "paid" and kind in LEGIT_REPEATS
    )

    lpr: dict[str, list[float]] = defaultdict(list)
    for row in completed:
        seconds = (row.completed_at - row.created_at).total_seconds()
        lpr["all"].append(seconds)
        mode = row.mode.value if row.mode else "none"
        lpr["cache" if row.cache_hit else "coalesced" if row.coalesced_with else mode].append(
            seconds
        )
    with_deadline = [r for r in rows if r.deadline is not None]
    met = [r for r in with_deadline if r.completed_at is not None and r.completed_at <= r.deadline
           and r.state == "completed"]  # fmt: skip
    first = min(r.created_at for r in rows)
    last = max((r.completed_at for r in rows if r.completed_at), default=first)
    savings = stats["savings_usd"]
    out: dict[str, Any] = {
        "jobs": len(ids),
        "cpr_usd": Decimal(stats["cpr_usd"]),
        "naive_cpr_usd": Decimal(stats["naive_cpr_usd"]),
        "batch_only_cpr_usd": (batch_only / n).quantize(QUANTUM),
        "oracle_cpr_usd": (oracle / n).quantize(QUANTUM),
        **{f"saved_{k}": Decimal(savings[k])
           for k in ("cache", "coalescing", "routing", "batching", "prompt_cache")},
        "lpr_p50_s": percentile(lpr["all"], 50),
        "lpr_p99_s": percentile(lpr["all"], 99),
    }  # fmt: skip
    for mode in sorted(k for k in lpr if k != "all"):
        out[f"lpr_p50_s_{mode}"] = percentile(lpr[mode], 50)
        out[f"lpr_p99_s_{mode}"] = percentile(lpr[mode], 99)
    out |= {
        "deadlines_met": round(len(met) / len(with_deadline), 4) if with_deadline else 1.0,
        "throughput_jobs_per_s": round(len(rows) / max(1e-9, (last - first).total_seconds()), 2),
        "wrong_cache_hits": wrong,
        "lost": len(ids) - len(completed),
        "_answered": answered,
        "_oracle_uncached": (oracle_uncached / n).quantize(QUANTUM),
        "_prefix_cached": (prefix_cached / n).quantize(QUANTUM),
        "_missed_repeats": missed,
        "_wrong": wrongs,
        "_by_id": by_id,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs in the trace")
    parser.add_argument("--seed", type=int, default=1, help="seed of the trace")
    parser.add_argument("--spread", type=float, default=60.0,
                        help="seconds over which the submissions arrive")  # fmt: skip
    parser.add_argument("--processing-seconds", type=float, default=20.0,
                        help="a batch's time in progress at the simulator")  # fmt: skip
    parser.add_argument("--latency-seconds", type=float, default=0.3,
                        help="the simulator's delay on every API call")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for the end")
    args = parser.parse_args(argv)

    submissions = build(args.jobs, seed=args.seed, data=DATA)
    kinds = Counter(item.kind for items in submissions for item in items)
    say(f"trace: {args.jobs} jobs in {len(submissions)} submissions, seed {args.seed}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))  # fmt: skip
    simulator = ["-m", "bench.simulator_log", "--validating-seconds", "2",
                 "--processing-seconds", str(args.processing_seconds), "--finalizing-seconds",
                 "1", "--latency-seconds", str(args.latency_seconds), "--seed",
                 str(args.seed)]  # fmt: skip
    with running_stack(WORK, simulator_argv=simulator, fallback_redis_db=9, say=say) as stack:
        from fastapi.testclient import TestClient
        from sqlalchemy import select

        from app.kit.db import get_sessionmaker
        from app.kit.queue import get_sender
        from app.main import create_app
        from app.models import CostRecord, Job
        from app.tenants import service as tenant_service

        argv_ = thrifty_worker_argv(WORK, "bench-trace", args.concurrency)
        child = start_worker(stack.sup, "bench-trace-worker", argv_, stack.env, get_sender())
        try:
            session = get_sessionmaker()()
            tenant = tenant_service.get_or_create_tenant(
                session, name=f"trace-{uuid.uuid4().hex[:6]}"
            )
            key = tenant_service.issue_api_key(session, tenant=tenant)
            session.commit()
            say(f"submitting over {args.spread:.0f} s")
            ids, started = submit_trace(
                submissions, spread=args.spread, tenant=tenant, session=session
            )
            wait_until_ended(session, set(ids), timeout=args.timeout)
            rows = session.execute(
                select(Job.id, Job.state, Job.mode, Job.result, Job.cache_hit,
                       Job.cached_from_job_id, Job.coalesced_with, Job.created_at,
                       Job.completed_at, Job.deadline).where(Job.id.in_(set(ids)))
            ).all()  # fmt: skip
            digests = request_digests(session, ids)
            records = {
                r.job_id: r
                for r in session.scalars(select(CostRecord).where(CostRecord.job_id.in_(set(ids))))
            }
            session.close()
            since = (started - timedelta(minutes=1)).isoformat()
            with TestClient(create_app(), headers={"Authorization": f"Bearer {key}"}) as api:
                response = api.get("/v1/stats", params={"since": since})
                response.raise_for_status()
                stats = response.json()
        finally:
            stack.sup.stop(child)
        custom_ids, batch_bodies, realtime = provider_requests(stack.simulator_url)

    out = figures(ids, rows, records, stats)
    answered, missed = out.pop("_answered"), out.pop("_missed_repeats")
    for line in out.pop("_wrong"):
        say(f"wrong: {line}")
    oracle_uncached, prefix_cached = out.pop("_oracle_uncached"), out.pop("_prefix_cached")
    out.pop("_by_id")
    # A job's request sent twice: its custom_id in two batches, or more realtime calls of a
    # body than jobs that paid for it realtime. Two jobs' identical requests both sent (a
    # repeat Thrifty did not catch) are counted apart, as repeated requests.
    # Flex calls are chat calls too (service_tier "flex"): the same log.
    paid_realtime = Counter(d for d, mode in digests.values() if mode in ("realtime", "flex"))
    resent = sum(n - 1 for n in custom_ids.values() if n > 1)
    out["duplicated"] = resent + sum(
        max(0, n - max(1, paid_realtime[d])) for d, n in realtime.items()
    )
    every = batch_bodies + realtime
    paid_by: dict[str, list[uuid.UUID]] = defaultdict(list)
    for job_id, (digest, _) in digests.items():
        paid_by[digest].append(job_id)
    repeated = Counter(
        f"{ids[j].kind}/{digests[j][1]}"
        for jobs_ in paid_by.values()
        if len(jobs_) > 1
        for j in sorted(jobs_, key=lambda j: ids[j].index)[1:]
    )
    say("\nhow each kind was answered (paid by the provider, cache hit, coalesced):")
    for kind in sorted(kinds):
        say(f"  {kind:16} " + "  ".join(f"{how} {answered.get((how, kind), 0):4}"
                                        for how in ("paid", "hit", "coalesced")))  # fmt: skip
    again = sum(n - 1 for n in every.values() if n > 1)
    unmatched = sum(1 for d, _ in digests.values() if d not in every)
    if unmatched:
        say(f"note: {unmatched} answered jobs' requests were not recognised in the simulator's log")
    say(f"provider requests: {sum(custom_ids.values())} batch lines, "
        f"{sum(realtime.values())} realtime calls; identical requests sent again: {again} "
        f"({dict(repeated)}: kind/mode of the later job); custom_ids resent: {resent}; "
        f"legitimate repeats paid: {missed}")  # fmt: skip
    say(f"the oracle without prompt caching: {oracle_uncached:.12f} per request; this run "
        f"had every shared prefix been cached: {prefix_cached:.12f}")  # fmt: skip
    say(f"stats: cost_usd={stats['cost_usd']} naive_cost_usd={stats['naive_cost_usd']} "
        f"jobs={stats['jobs']}\n")  # fmt: skip
    cpr, oracle, batch_only = out["cpr_usd"], out["oracle_cpr_usd"], out["batch_only_cpr_usd"]
    say(f"cpr is {cpr / oracle:.2f}x the oracle's" if oracle else "the oracle paid nothing")
    say(f"cpr is {cpr / batch_only:.2f}x batch-only's\n" if batch_only else "batch-only: 0\n")
    for key_, value in out.items():
        say(f"{key_}={value:.12f}" if isinstance(value, Decimal) else f"{key_}={value}")
    targets = {
        "cpr_within_15pct_of_oracle": cpr <= oracle * Decimal("1.15"),
        "cpr_at_most_half_batch_only": cpr <= batch_only / 2,
        "wrong_cache_hits_0": out["wrong_cache_hits"] == 0,
        "lost_0": out["lost"] == 0,
        "duplicated_0": out["duplicated"] == 0,
        "deadlines_met_1": out["deadlines_met"] == 1.0,
    }
    shown = ",".join(f"{name}:{'met' if ok else 'MISSED'}" for name, ok in targets.items())
    say(f"targets={shown}")
    say(f"targets_met={'yes' if all(targets.values()) else 'no'}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
