"""Queries on the ``jobs`` and ``job_groups`` tables (every write is in ``transitions``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.kit.db import in_array
from app.models import CacheMode, Job, JobGroup, JobState, RequestedMode


class ExistingJob(NamedTuple):
    """A job stored under an idempotency key."""

    id: uuid.UUID
    state: JobState
    group_id: uuid.UUID | None


def find_by_keys(
    session: Session, *, tenant_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, ExistingJob]:
    """Existing jobs by idempotency key."""
    query = select(Job.idempotency_key, Job.id, Job.state, Job.group_id).where(
        Job.tenant_id == tenant_id, Job.idempotency_key.in_(keys)
    )
    return {
        key: ExistingJob(job_id, state, group_id)
        for key, job_id, state, group_id in session.execute(query)
        if key
    }


def get(session: Session, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A queued job's inputs: what ingest reads to look it up in the cache and route it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    prompt: str | None
    document: str | None
    instruction: str | None
    system: str | None
    max_output_tokens: int | None
    temperature: float | None
    model_hint: str | None
    tier_hint: str | None
    cache_mode: CacheMode
    semantic_cache: bool | None
    requested_mode: RequestedMode
    deadline: datetime | None


_QUEUED_COLUMNS = tuple(getattr(Job, f.name) for f in fields(QueuedJob))


def lock_queued(session: Session, *, ids: Sequence[uuid.UUID]) -> list[QueuedJob]:
    """Lock the jobs among ``ids`` that are still queued; rows another worker holds are skipped.

    The state is checked here, not in SQL: a state condition invites the planner to scan every
    queued job through a state index (after a large submission its statistics are stale)
    instead of looking the ids up by primary key.
    """
    query = (
        select(Job.state, *_QUEUED_COLUMNS)
        .where(in_array(Job.id, ids))
        .order_by(Job.id)
        .with_for_update(skip_locked=True)
    )
    return [QueuedJob(*row[1:]) for row in session.execute(query) if row[0] == JobState.queued]


def get_group(session: Session, *, tenant_id: uuid.UUID, group_id: uuid.UUID) -> JobGroup | None:
    query = select(JobGroup).where(JobGroup.id == group_id, JobGroup.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


class GroupTotal(NamedTuple):
    """One state's share of a group: job count, cache hits, tokens and costs."""

    state: JobState
    jobs: int
    cache_hits: int
    input_tokens: int
    output_tokens: int
    cost: Decimal
    naive: Decimal


def group_totals(session: Session, *, group_id: uuid.UUID) -> list[GroupTotal]:
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
    return [GroupTotal._make(row) for row in session.execute(query)]


def list_group_jobs(
    session: Session, *, group_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> list[Job]:
    query = select(Job).where(Job.group_id == group_id)
    if after is not None:
        query = query.where(Job.id > after)
    return list(session.scalars(query.order_by(Job.id).limit(limit)))
