"""The reads and writes deadline escalation adds to ``jobs``: batch-mode jobs whose batch runs
late, moved to a faster path before their deadline; coalesced followers whose leader has not
ended in time, detached and sent on their own; and the jobs a late line belonged to."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.kit.db import in_array
from app.models import Job, JobMode, JobState, utcnow

# The states of a job in a batch that has not ended (pending or at the provider).
_IN_BATCH = (JobState.batched, JobState.submitted)
# A follower still waiting on its leader (the predicate of ``ix_jobs_coalesced_with``).
_WAITING_FOLLOWER = text("jobs.coalesced_with IS NOT NULL AND jobs.state = 'waiting'")


@dataclass(frozen=True, slots=True)
class LateJob:
    """A batch-mode job due for escalation, and what choosing its faster path needs."""

    id: uuid.UUID
    waits_on: uuid.UUID  # the batch it is in, or the leader it follows
    model: str
    deadline: datetime
    estimated_tokens: int | None


@dataclass(frozen=True, slots=True)
class Escalation:
    """A job taken out of its late batch into the window of ``(provider, model, mode)``."""

    job_id: uuid.UUID
    left: uuid.UUID  # the batch it leaves, or the leader it stops following
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
    """batched / submitted in ``left`` (a batch) → waiting in the window of the new route, the
    reason appended to ``route_reason`` and kept in ``routing["escalation"]`` (the batch it
    left, the mode before and after, when). Jobs no longer in that batch are left alone.
    The caller holds the batch's lock, so no poll applies its results meanwhile. Returns
    the jobs moved."""
    groups: dict[tuple[uuid.UUID, str, str, JobMode, str], list[uuid.UUID]] = defaultdict(list)
    for item in escalations:
        key = (item.left, item.provider, item.model, item.mode, item.reason)
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


def late_followers(session: Session, *, provider: str, by: datetime, limit: int) -> list[LateJob]:
    """Coalesced followers of ``provider`` still waiting on their leader whose deadline is
    at or before ``by``, soonest first (``waits_on`` is the leader)."""
    query = (
        select(Job.id, Job.coalesced_with, Job.model, Job.deadline, Job.estimated_tokens)
        .where(
            _WAITING_FOLLOWER,
            Job.provider == provider,
            Job.deadline.is_not(None),
            Job.deadline <= by,
        )
        .order_by(Job.deadline)
        .limit(limit)
    )
    return [
        LateJob(row.id, row.coalesced_with, row.model, row.deadline, row.estimated_tokens)
        for row in session.execute(query)
        if row.coalesced_with is not None and row.model is not None and row.deadline
    ]


def detach_followers(session: Session, escalations: Sequence[Escalation]) -> list[uuid.UUID]:
    """Followers still waiting on the leader ``left`` names →
    their own job in the window of the new route, no longer following; the reason appended
    to ``route_reason`` and kept in ``routing["escalation"]`` (``from_leader``). A follower
    its leader settled meanwhile is left alone (the guard re-checks under the row lock)."""
    now = utcnow()
    moved: list[uuid.UUID] = []
    for item in escalations:
        record = {
            "from_leader": str(item.left),
            "mode": item.mode.value,
            "model": item.model,
            "reason": item.reason,
            "at": now.isoformat(),
        }
        statement = (
            update(Job)
            .where(
                Job.id == item.job_id,
                Job.coalesced_with == item.left,
                Job.state == JobState.waiting,
            )
            .values(
                coalesced_with=None,
                provider=item.provider,
                model=item.model,
                mode=item.mode,
                route_reason=func.concat(Job.route_reason, f"; {item.reason}"),
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
