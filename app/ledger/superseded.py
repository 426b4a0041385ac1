"""Late answers the ledger keeps apart: lines of escalated jobs (``superseded_lines``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.ledger.pricing import TokenUsage
from app.models import SupersededLine


@dataclass(frozen=True, slots=True)
class LateLine:
    """A provider's answer for a job that was escalated and answered elsewhere."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    provider_batch_id: uuid.UUID
    provider: str
    model: str
    mode: str
    usage: TokenUsage
    cost_usd: Decimal


def record_superseded(session: Session, lines: Sequence[LateLine]) -> None:
    """Record late lines once each (a batch applied twice records nothing new): what the
    provider charged for answers that were not used, apart from the jobs' own costs."""
    if not lines:
        return
    rows = [
        {
            "job_id": line.job_id,
            "provider_batch_id": line.provider_batch_id,
            "tenant_id": line.tenant_id,
            "provider": line.provider,
            "model": line.model,
            "mode": line.mode,
            "input_tokens": line.usage.input_tokens,
            "cached_input_tokens": line.usage.cached_input_tokens,
            "cache_write_tokens": line.usage.cache_write_tokens,
            "output_tokens": line.usage.output_tokens,
            "cost_usd": line.cost_usd,
        }
        for line in lines
    ]
    session.execute(insert(SupersededLine).values(rows).on_conflict_do_nothing())


def superseded_usd(session: Session, *, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Decimal]:
    """What the late lines of each of ``job_ids`` cost (jobs with none are left out)."""
    query = select(SupersededLine.job_id, SupersededLine.cost_usd).where(
        SupersededLine.job_id.in_(job_ids)
    )
    found: dict[uuid.UUID, Decimal] = {}
    for job_id, cost in session.execute(query):
        found[job_id] = found.get(job_id, Decimal(0)) + cost
    return found
