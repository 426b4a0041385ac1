"""What every transition that ends jobs does in its transaction (``app/jobs/transitions.py``):
the ledger records the ended jobs' costs, the webhook events are recorded, and the ended jobs'
coalesced followers are settled, so a result is never stored without its cost record and the
webhook deliveries it owes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from app.jobs import coalescing, events, repository
from app.ledger import service as ledger_service
from app.models import utcnow

Costs = Mapping[uuid.UUID, ledger_service.CostChain]


def finished(
    session: Session,
    job_ids: Sequence[uuid.UUID],
    costs: Costs | None = None,
    facts: Sequence[repository.EndedFacts] | None = None,
) -> None:
    """What every transition that ends jobs does in its transaction: the ledger records each
    ended job's cost (``costs``: the chain each completed job was priced with; ``facts``, the
    rows as the transition's UPDATE returned them, else read here), then the webhook events
    are recorded, then the ended jobs' coalesced followers settled."""
    if not job_ids:
        return
    now = utcnow()
    known = costs or {}
    ended = [
        ledger_service.EndedJob(
            job_id=row.id,
            tenant_id=row.tenant_id,
            group_id=row.group_id,
            state=row.state.value,
            provider=row.provider,
            model=row.model,
            mode=row.mode.value if row.mode else None,
            usage=ledger_service.TokenUsage(
                input_tokens=row.input_tokens or 0,
                output_tokens=row.output_tokens or 0,
                cached_input_tokens=row.cached_input_tokens or 0,
                cache_write_tokens=row.cache_write_tokens or 0,
            ),
            costs=known.get(row.id),
            created_at=row.created_at,
            ended_at=row.completed_at or now,
            deadline=row.deadline,
        )
        for row in (repository.ended_facts(session, ids=job_ids) if facts is None else facts)
    ]
    ledger_service.record(session, ended)
    events.jobs_finished(session, job_ids=job_ids)
    # Followers of the leaders that ended complete from their results, or are re-driven.
    followers, chains = coalescing.settle_followers(session, leader_ids=job_ids, costs=known)
    finished(session, followers, chains)
