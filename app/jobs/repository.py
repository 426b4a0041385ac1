from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import Job, JobGroup, JobState

# Rows per INSERT statement: keeps each statement under Postgres's 65,535 bind parameters.
INSERT_CHUNK = 1000


def insert_many(session: Session, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert jobs with multi-row INSERTs; returns the ids that were new.

    A row whose (tenant, idempotency key) already exists is skipped, not an error.
    """
    inserted: set[uuid.UUID] = set()
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = (
            insert(Job)
            .values(list(rows[start : start + INSERT_CHUNK]))
            .on_conflict_do_nothing(
                index_elements=["tenant_id", "idempotency_key"],
                index_where=Job.idempotency_key.is_not(None),
            )
            .returning(Job.id)
        )
        inserted.update(session.scalars(statement))
    return inserted


def find_by_keys(
    session: Session, *, tenant_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, tuple[uuid.UUID, JobState, uuid.UUID | None]]:
    """Existing jobs by idempotency key: (id, state, group id)."""
    query = select(Job.idempotency_key, Job.id, Job.state, Job.group_id).where(
        Job.tenant_id == tenant_id, Job.idempotency_key.in_(keys)
    )
    return {
        key: (job_id, state, group_id)
        for key, job_id, state, group_id in session.execute(query)
        if key
    }


def get(session: Session, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


def lock_in_state(session: Session, *, ids: Sequence[uuid.UUID], state: JobState) -> list[Job]:
    """Lock the jobs among ``ids`` still in ``state``; rows another worker holds are skipped."""
    query = (
        select(Job)
        .where(Job.id.in_(ids), Job.state == state)
        .order_by(Job.id)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def get_group(session: Session, *, tenant_id: uuid.UUID, group_id: uuid.UUID) -> JobGroup | None:
    query = select(JobGroup).where(JobGroup.id == group_id, JobGroup.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


def group_totals(session: Session, *, group_id: uuid.UUID) -> list[dict[str, Any]]:
    """Per state: job count, cache hits, tokens and costs."""
    query = (
        select(
            Job.state,
            func.count(),
            func.count().filter(Job.cache_hit),
            func.coalesce(func.sum(Job.input_tokens), 0),
            func.coalesce(func.sum(Job.output_tokens), 0),
            func.coalesce(func.sum(Job.cost_usd), Decimal(0)),
            func.coalesce(func.sum(Job.naive_cost_usd), Decimal(0)),
        )
        .where(Job.group_id == group_id)
        .group_by(Job.state)
    )
    keys = ("state", "count", "cache_hits", "input_tokens", "output_tokens", "cost", "naive")
    return [dict(zip(keys, row, strict=True)) for row in session.execute(query)]


def list_group_jobs(
    session: Session, *, group_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[Job]:
    query = select(Job).where(Job.group_id == group_id)
    if after is not None:
        query = query.where(Job.id > after)
    return list(session.scalars(query.order_by(Job.id).limit(limit)))
