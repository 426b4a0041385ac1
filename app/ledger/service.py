"""The ledger's public surface: record ended jobs, what a tenant spent, stats.

Other domains import it as ``from app.ledger import service as ledger_service``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy.orm import Session

from app.ledger import metrics, repository
from app.ledger.pricing import (
    NOTHING,
    AnsweredBy,
    CostChain,
    Savings,
    TokenUsage,
    chain,
    paid_price,
)
from app.ledger.rows import EndedJob
from app.ledger.superseded import LateLine, record_superseded, superseded_usd

__all__ = [
    "AnsweredBy",
    "CostChain",
    "EndedJob",
    "LateLine",
    "Savings",
    "TokenUsage",
    "chain",
    "paid_price",
    "record",
    "record_superseded",
    "savings_of",
    "spent_usd",
    "superseded_usd",
]


def record(session: Session, jobs: Sequence[EndedJob]) -> None:
    """Write the cost record of each job that just ended, and add it to the rollups, in the
    caller's transaction. A job already recorded is skipped (its first end stands), so a
    transition that runs twice never counts a job twice.

    A completed job carries the chain it was priced with; a failed or cancelled one cost
    nothing and saved nothing.
    """
    if not jobs:
        return
    columns: dict[str, list[Any]] = defaultdict(list)
    for job in jobs:
        completed = job.state == "completed"
        costs = (job.costs or NOTHING) if completed else NOTHING
        savings = costs.savings
        latency = (job.ended_at - job.created_at).total_seconds() if completed else None
        values: dict[str, Any] = {
            "job_id": job.job_id,
            "tenant_id": job.tenant_id,
            "group_id": job.group_id,
            "state": job.state,
            "provider": job.provider,
            "model": job.model,
            "mode": job.mode,
            "answered_by": costs.answered_by.value if completed else None,
            "input_tokens": job.usage.input_tokens,
            "cached_input_tokens": job.usage.cached_input_tokens,
            "cache_write_tokens": job.usage.cache_write_tokens,
            "output_tokens": job.usage.output_tokens,
            "naive_usd": costs.naive,
            "routed_usd": costs.routed,
            "batched_usd": costs.batched,
            "prompt_cached_usd": costs.prompt_cached,
            "actual_usd": costs.actual,
            "saved_cache_usd": savings.cache,
            "saved_coalescing_usd": savings.coalescing,
            "saved_routing_usd": savings.routing,
            "saved_batching_usd": savings.batching,
            "saved_prompt_cache_usd": savings.prompt_cache,
            "created_at": job.created_at,
            "ended_at": job.ended_at,
            "deadline": job.deadline,
            "latency_seconds": None if latency is None else max(0.0, latency),
        }
        for name in repository.RECORD_COLUMNS:
            columns[name].append(values[name])
    recorded = repository.insert_records(session, columns)
    metrics.observe_ended(session, [job for job in jobs if job.job_id in recorded])


def savings_of(session: Session, *, job_ids: Sequence[UUID]) -> dict[UUID, Savings]:
    """The savings by layer of the jobs that have ended (from their cost records)."""
    recorded = repository.savings(session, job_ids=job_ids)
    return {job_id: Savings(*amounts) for job_id, amounts in recorded.items()}


def spent_usd(session: Session, *, tenant_id: UUID, since: datetime) -> Decimal:
    """Actual cost of the tenant's jobs that ended since ``since`` (for budgets)."""
    return repository.spent(session, tenant_id=tenant_id, since=since)
