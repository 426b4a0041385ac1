"""The reads and writes deadline escalation adds to ``jobs``: batch-mode jobs whose batch runs
late, moved to a faster path before their deadline, and the jobs a late line belonged to."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.kit.db import in_array
from app.models import Job, JobMode, JobState, utcnow

# The states of a job in a batch that has not ended (pending or at the provider).
_IN_BATCH = (JobState.batched, JobState.submitted)


@dataclass(frozen=True, slots=True)
class LateJob:
    """A batch-mode job due for escalation, and what choosing its faster path needs."""

    id: uuid.UUID
    provider_batch_id: uuid.UUID
    model: str
    deadline: datetime
    estimated_tokens: int | None


@dataclass(frozen=True, slots=True)
class Escalation:
    """A job taken out of its late batch into the window of ``(provider, model, mode)``."""

    job_id: uuid.UUID
    from_batch: uuid.UUID
    provider: str
    model: str
    mode: JobMode
    reason: str


def due(
    session: Session, *, provider: str, by: datetime, open_batches: Select[uuid.UUID], limit: int
) -> list[LateJob]:
    """Batch-mode jobs of ``provider`` in one of ``open_batches`` (pending or submitted, a
    query batching hands in) whose deadline is at or before ``by``, soonest first."""
    query = (
        select(Job.id, Job.provider_batch_id, Job.model, Job.deadline, Job.estimated_tokens)
        .where(
            Job.provider == provider,
            Job.deadline.is_not(None),
            Job.deadline <= by,
            Job.mode == JobMode.batch,
            Job.state.in_(_IN_BATCH),
            Job.provider_batch_id.in_(open_batches),
        )
        .order_by(Job.deadline)
        .limit(limit)
    )
    return [
        LateJob(row.id, row.provider_batch_id, row.model, row.deadline, row.estimated_tokens)
        for row in session.execute(query)
        if row.provider_batch_id is not None and row.model is not None and row.deadline
    ]


def escalate(session: Session, escalations: Sequence[Escalation]) -> list[uuid.UUID]:
    """batched / submitted in ``from_batch`` → waiting in the window of the new route, the
    reason appended to ``route_reason`` and kept in ``routing["escalation"]`` (the batch it
    left, the mode before and after, when). Jobs no longer in that batch are left alone.
    The caller holds the batch's lock, so no poll applies its results meanwhile. Returns
    the jobs moved."""
    groups: dict[tuple[uuid.UUID, str, str, JobMode, str], list[uuid.UUID]] = defaultdict(list)
    for item in escalations:
        key = (item.from_batch, item.provider, item.model, item.mode, item.reason)
        groups[key].append(item.job_id)
    now = utcnow()
    moved: list[uuid.UUID] = []
    for (batch_id, provider, model, mode, reason), job_ids in groups.items():
        record = {
            "from_batch": str(batch_id),
            "from_mode": JobMode.batch.value,
            "mode": mode.value,
            "model": model,
            "reason": reason,
            "at": now.isoformat(),
        }
        statement = (
            update(Job)
            .where(
                in_array(Job.id, job_ids),
                Job.provider_batch_id == batch_id,
                Job.state.in_(_IN_BATCH),
                Job.mode == JobMode.batch,
            )
            .values(
                state=JobState.waiting,
                provider_batch_id=None,
                provider=provider,
                model=model,
                mode=mode,
                route_reason=func.concat(Job.route_reason, f"; {reason}"),
                routing=func.coalesce(Job.routing, literal({}, JSONB)).op("||")(
                    literal({"escalation": record}, JSONB)
                ),
                updated_at=now,
            )
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        moved.extend(session.scalars(statement))
    return moved


def escalated_from(
    session: Session, *, batch_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Among ``job_ids``, the jobs escalated out of ``batch_id``, with their tenants."""
    if not job_ids:
        return {}
    query = select(Job.id, Job.tenant_id).where(
        in_array(Job.id, job_ids), Job.routing["escalation"]["from_batch"].astext == str(batch_id)
    )
    return {job_id: tenant_id for job_id, tenant_id in session.execute(query)}
