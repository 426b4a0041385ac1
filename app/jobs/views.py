"""The public shapes of jobs and groups, built from their rows (the API's and webhooks')."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from app.jobs import repository
from app.jobs.schemas import Cost, GroupOut, JobOut, Timings, Usage
from app.ledger import service as ledger_service
from app.ledger.schemas import SavingsByLayer
from app.models import TERMINAL_STATES, Job, JobGroup, JobState
from app.routing.schemas import RoutingOut


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if end else None


def _saved(naive: Decimal | None, cost: Decimal | None) -> Decimal | None:
    return naive - cost if naive is not None and cost is not None else None


def to_outs(session: Session, jobs: Sequence[Job]) -> list[JobOut]:
    """The public shape of each job, with its savings by layer from the ledger."""
    savings = ledger_service.savings_of(session, job_ids=[job.id for job in jobs])
    return [to_out(job, savings.get(job.id)) for job in jobs]


def to_out(job: Job, savings: ledger_service.Savings | None = None) -> JobOut:
    """``job``'s public shape; ``savings``: its cost record's savings by layer, if it ended."""
    total = (
        job.input_tokens + job.output_tokens
        if job.input_tokens is not None and job.output_tokens is not None
        else None
    )
    return JobOut(
        id=job.id,
        group_id=job.group_id,
        state=job.state,
        result=job.result,
        error=job.error,
        model=job.model,
        provider=job.provider,
        mode=job.mode,
        route_reason=job.route_reason,
        routing=None if job.routing is None else RoutingOut.model_validate(job.routing),
        cache_hit=job.cache_hit,
        cached_from_job_id=job.cached_from_job_id,
        coalesced_with=job.coalesced_with,
        cache_similarity=job.cache_similarity,
        usage=Usage(
            input_tokens=job.input_tokens, output_tokens=job.output_tokens, total_tokens=total
        ),
        cost=Cost(
            cost_usd=job.cost_usd,
            naive_cost_usd=job.naive_cost_usd,
            saved_usd=_saved(job.naive_cost_usd, job.cost_usd),
            savings_usd=None
            if savings is None
            else SavingsByLayer(
                cache=savings.cache,
                coalescing=savings.coalescing,
                routing=savings.routing,
                batching=savings.batching,
                prompt_cache=savings.prompt_cache,
            ),
        ),
        timings=Timings(
            created_at=job.created_at,
            routed_at=job.routed_at,
            submitted_at=job.submitted_at,
            completed_at=job.completed_at,
            queue_seconds=_seconds(job.created_at, job.submitted_at),
            total_seconds=_seconds(job.created_at, job.completed_at),
        ),
        metadata=job.job_metadata,
        idempotency_key=job.idempotency_key,
        requested_mode=job.requested_mode,
        deadline=job.deadline,
        priority=job.priority,
        attempts=job.attempts,
    )


def group_out(session: Session, group: JobGroup) -> GroupOut:
    """A bulk submission's progress by state, with its usage and cost so far."""
    totals = repository.group_totals(session, group_id=group.id)
    counts = {state: 0 for state in JobState}
    for row in totals:
        counts[row.state] = row.jobs
    input_tokens = sum(row.input_tokens for row in totals)
    output_tokens = sum(row.output_tokens for row in totals)
    cost = sum((row.cost for row in totals), Decimal(0))
    naive = sum((row.naive for row in totals), Decimal(0))
    return GroupOut(
        id=group.id,
        size=group.size,
        created_at=group.created_at,
        counts=counts,
        done=all(counts[s] == 0 for s in JobState if s not in TERMINAL_STATES),
        cache_hits=sum(row.cache_hits for row in totals),
        usage=Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        ),
        cost=Cost(cost_usd=cost, naive_cost_usd=naive, saved_usd=naive - cost),
    )
