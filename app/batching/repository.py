from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from app.models import BatchState, Job, JobState, ProviderBatch, utcnow


@dataclass(frozen=True)
class Window:
    provider: str
    model: str
    mode: str
    size: int
    oldest: datetime


def open_windows(session: Session) -> list[Window]:
    """Waiting jobs grouped by (provider, model, mode), with the count and the oldest."""
    query = (
        select(Job.provider, Job.model, Job.mode, func.count(), func.min(Job.routed_at))
        .where(Job.state == JobState.waiting)
        .group_by(Job.provider, Job.model, Job.mode)
    )
    return [
        Window(provider, model, mode, size, oldest)
        for provider, model, mode, size, oldest in session.execute(query)
        # Waiting jobs are always routed; the guard keeps the types honest.
        if provider and model and mode and oldest
    ]


def claim(
    session: Session, *, provider: str, model: str, mode: str, limit: int
) -> ProviderBatch | None:
    """Move up to ``limit`` waiting jobs, oldest first, into a new pending batch.

    ``FOR UPDATE SKIP LOCKED`` makes concurrent collectors take disjoint rows, so no job is
    ever in two batches.
    """
    candidates = (
        select(Job.id)
        .where(
            Job.state == JobState.waiting,
            Job.provider == provider,
            Job.model == model,
            Job.mode == mode,
        )
        .order_by(Job.routed_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(candidates))
    if not ids:
        return None
    batch = ProviderBatch(provider=provider, model=model, mode=mode, request_count=len(ids))
    session.add(batch)
    session.flush()
    session.execute(
        update(Job)
        .where(Job.id.in_(ids))
        .values(state=JobState.batched, provider_batch_id=batch.id, updated_at=utcnow())
    )
    return batch


def lock_batch(session: Session, *, batch_id: uuid.UUID, state: BatchState) -> ProviderBatch | None:
    query = (
        select(ProviderBatch)
        .where(ProviderBatch.id == batch_id, ProviderBatch.state == state)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).one_or_none()


def batch_jobs(session: Session, *, batch_id: uuid.UUID, state: JobState) -> list[Job]:
    query = (
        select(Job).where(Job.provider_batch_id == batch_id, Job.state == state).order_by(Job.id)
    )
    return list(session.scalars(query))


def set_jobs_state(
    session: Session, *, batch_id: uuid.UUID, from_state: JobState, values: dict[str, Any]
) -> None:
    session.execute(
        update(Job)
        .where(Job.provider_batch_id == batch_id, Job.state == from_state)
        .values(updated_at=utcnow(), **values)
    )


def batch_ids_in_state(session: Session, *, state: BatchState) -> list[uuid.UUID]:
    query = (
        select(ProviderBatch.id)
        .where(ProviderBatch.state == state)
        .order_by(ProviderBatch.created_at)
    )
    return list(session.scalars(query))


def apply_results(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write results by job id, only onto jobs still ``submitted`` (so a re-poll is a no-op)."""
    if not rows:
        return
    table = cast(Table, Job.__table__)
    statement = (
        update(table)
        .where(table.c.id == bindparam("job_id"), table.c.state == JobState.submitted)
        .values(
            state=bindparam("new_state"),
            result=bindparam("result"),
            error=bindparam("error"),
            input_tokens=bindparam("input_tokens"),
            output_tokens=bindparam("output_tokens"),
            cost_usd=bindparam("cost_usd"),
            naive_cost_usd=bindparam("naive_cost_usd"),
            completed_at=bindparam("completed_at"),
            updated_at=bindparam("completed_at"),
        )
    )
    session.connection().execute(statement, list(rows))


def stale_jobs(
    session: Session, *, state: JobState, before: datetime, limit: int
) -> list[uuid.UUID]:
    query = (
        select(Job.id)
        .where(Job.state == state, Job.updated_at < before)
        .order_by(Job.updated_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def stale_batches(session: Session, *, state: BatchState, before: datetime) -> list[uuid.UUID]:
    query = select(ProviderBatch.id).where(
        ProviderBatch.state == state, ProviderBatch.updated_at < before
    )
    return list(session.scalars(query))


def provider_of(session: Session, *, batch_id: uuid.UUID) -> str | None:
    return session.scalar(select(ProviderBatch.provider).where(ProviderBatch.id == batch_id))
