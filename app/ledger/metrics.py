"""Prometheus counters of ended jobs, counted once their transaction commits.

They live in the process that ended the jobs (a worker, the API); in the stack every process
writes them to the shared multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``) and the
operator metrics server adds them up (app/metrics.py).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.orm import Session

from app.kit.hooks import after_commit
from app.ledger.pricing import NOTHING
from app.ledger.rows import EndedJob

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
                   7200, 21600, 43200, 86400)  # fmt: skip
JOBS_FINISHED = Counter(
    "thrifty_jobs_finished", "Jobs that ended, by state, model and mode", ["state", "model", "mode"]
)
# LPR: submission to result available, for completed jobs.
JOB_LATENCY = Histogram(
    "thrifty_job_latency_seconds",
    "Latency per request (submission to result available) of completed jobs, by mode",
    ["mode"],
    buckets=LATENCY_BUCKETS,
)
COST = Counter("thrifty_cost_usd", "Cost of completed jobs in USD (actual or naive)", ["kind"])
# A gauge, not a counter: a layer's saving can be negative (a cache write costs more than an
# uncached input token, a hint can route to a dearer model than the baseline). Summed over
# every process, the dead ones included.
SAVINGS = Gauge(
    "thrifty_savings_usd", "Savings by layer in USD", ["layer"], multiprocess_mode="sum"
)
TOKENS = Counter("thrifty_tokens", "Tokens of completed jobs, by kind", ["kind"])
LAYERS = ("cache", "coalescing", "routing", "batching", "prompt_cache")


def observe(jobs: Sequence[EndedJob]) -> None:
    """Count ended jobs now: each series is added to once per call, with the sum of its jobs
    (money summed exactly, as ``Decimal``), not once per job (a chunk of 250 cache hits
    made 3,000 ``labels`` look-ups and increments); each latency is observed on its own."""
    finished: Tally[tuple[str, str, str]] = Tally()
    latencies: dict[str, list[float]] = defaultdict(list)
    money: dict[str, Decimal] = defaultdict(Decimal)
    tokens: Tally[str] = Tally()
    for job in jobs:
        mode = job.mode or "none"
        finished[(job.state, job.model or "none", mode)] += 1
        if job.state != "completed":
            continue
        latencies[mode].append(max(0.0, (job.ended_at - job.created_at).total_seconds()))
        costs = job.costs or NOTHING
        money["actual"] += costs.actual
        money["naive"] += costs.naive
        savings = costs.savings
        for layer in LAYERS:
            money[layer] += getattr(savings, layer)
        tokens["input"] += job.usage.input_tokens
        tokens["cached_input"] += job.usage.cached_input_tokens
        tokens["output"] += job.usage.output_tokens
    for labels, count in finished.items():
        JOBS_FINISHED.labels(*labels).inc(count)
    for mode, seconds in latencies.items():
        histogram = JOB_LATENCY.labels(mode)
        for value in seconds:
            histogram.observe(value)
    if not latencies:
        return
    for kind in ("actual", "naive"):
        COST.labels(kind).inc(float(money[kind]))
    for layer in LAYERS:
        SAVINGS.labels(layer).inc(float(money[layer]))
    for kind in ("input", "cached_input", "output"):
        TOKENS.labels(kind).inc(tokens[kind])


def observe_ended(session: Session, jobs: Sequence[EndedJob]) -> None:
    """Count ended jobs once ``session`` commits (a rolled-back end is never counted)."""
    if jobs:
        frozen = list(jobs)
        after_commit(session, lambda: observe(frozen))
