"""Load the router compares with limits: a model's estimated input tokens committed to the
Batch API and not ended (waiting in its batch window, batched or submitted), against its
queue limit (OpenAI's enqueued tokens per model, ``enqueued_token_limit``); a model's
realtime and flex requests in flight, against ``max_concurrent_requests``; and a tenant's
reserved cost in flight, which budgets add to the ledger's spend."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.kit.db import in_array
from app.models import Job, JobMode, JobState

_ENQUEUED = (JobState.waiting, JobState.batched, JobState.submitted)
# In flight, as the partial index ix_jobs_tenant_reserved has it.
_IN_FLIGHT = (JobState.queued, *_ENQUEUED)


def enqueued_tokens(session: Session, *, models: Sequence[str]) -> dict[str, int]:
    """Per model among ``models``, the estimated input tokens of its unfinished batch-mode
    jobs (0 for a model with none)."""
    if not models:
        return {}
    query = (
        select(Job.model, func.coalesce(func.sum(Job.estimated_tokens), 0))
        .where(
            in_array(Job.model, list(models)),
            Job.mode == JobMode.batch,
            Job.state.in_(_ENQUEUED),
        )
        .group_by(Job.model)
    )
    found = {str(model): int(tokens or 0) for model, tokens in session.execute(query)}
    return {model: found.get(model, 0) for model in models}


def in_flight_requests(session: Session, *, models: Sequence[str]) -> dict[str, int]:
    """Per model among ``models``, its realtime and flex jobs routed and not ended (waiting in
    a realtime window, batched, or being called): the requests a server with a concurrency
    limit holds or is about to."""
    if not models:
        return {}
    query = (
        select(Job.model, func.count())
        .where(
            in_array(Job.model, list(models)),
            Job.mode.in_((JobMode.realtime, JobMode.flex)),
            Job.state.in_(_ENQUEUED),
        )
        .group_by(Job.model)
    )
    found = {str(model): int(count) for model, count in session.execute(query)}
    return {model: found.get(model, 0) for model in models}


def reserved_usd(
    session: Session, *, tenant_id: uuid.UUID, excluding: Sequence[uuid.UUID] = ()
) -> Decimal:
    """The reserved (expected) cost of ``tenant_id``'s jobs in flight, less ``excluding``'s."""
    query = select(func.coalesce(func.sum(Job.reserved_usd), 0)).where(
        Job.tenant_id == tenant_id, Job.reserved_usd.is_not(None), Job.state.in_(_IN_FLIGHT)
    )
    if excluding:
        query = query.where(Job.id.not_in(list(excluding)))
    return Decimal(session.scalar(query) or 0)
