"""Queries on the ``jobs`` and ``job_groups`` tables (every write is in ``transitions``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from app.kit.db import in_array
from app.kit.prompts import ChatMessage
from app.models import TERMINAL_STATES, CacheMode, Job, JobGroup, JobMode, JobState, RequestedMode


class ExistingJob(NamedTuple):
    """A job stored under an idempotency key."""

    id: uuid.UUID
    state: JobState
    group_id: uuid.UUID | None
    # None for jobs stored before payloads were hashed: those match any payload.
    request_hash: str | None


def find_by_keys(
    session: Session, *, tenant_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, ExistingJob]:
    """Existing jobs by idempotency key."""
    query = select(Job.idempotency_key, Job.id, Job.state, Job.group_id, Job.request_hash).where(
        Job.tenant_id == tenant_id, Job.idempotency_key.in_(keys)
    )
    return {
        key: ExistingJob(job_id, state, group_id, request_hash)
        for key, job_id, state, group_id, request_hash in session.execute(query)
        if key
    }


def count_unfinished(session: Session, *, tenant_id: uuid.UUID, up_to: int) -> int:
    """The tenant's jobs that have not ended, counted up to ``up_to`` (a bounded scan)."""
    unfinished = (
        select(Job.id)
        .where(Job.tenant_id == tenant_id, Job.state.not_in(TERMINAL_STATES))
        .limit(up_to)
        .subquery()
    )
    return session.scalar(select(func.count()).select_from(unfinished)) or 0


def group_size(session: Session, *, group_id: uuid.UUID) -> int | None:
    """The number of jobs a bulk submission stored."""
    return session.scalar(select(JobGroup.size).where(JobGroup.id == group_id))


def get(session: Session, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


def get_many(session: Session, *, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[Job]:
    """The tenant's jobs among ``ids`` (any order)."""
    query = select(Job).where(in_array(Job.id, ids), Job.tenant_id == tenant_id)
    return list(session.scalars(query))


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
    history: list[ChatMessage] | None
    model_hint: str | None
    tier_hint: str | None
    cache_mode: CacheMode
    semantic_cache: bool | None
    requested_mode: RequestedMode
    deadline: datetime | None
    quality_target: float | None


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


# Reads for the events of ended jobs (app/jobs/events.py) ------------------------------------


def listening_tenants(session: Session, *, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bool]:
    """The tenants of these jobs, each with whether any of its jobs has a ``webhook_url``."""
    query = (
        select(Job.tenant_id, func.bool_or(Job.webhook_url.is_not(None)))
        .where(in_array(Job.id, ids))
        .group_by(Job.tenant_id)
    )
    return {tenant_id: bool(own) for tenant_id, own in session.execute(query)}


def ended_jobs(session: Session, *, ids: Sequence[uuid.UUID]) -> list[Job]:
    """The jobs among ``ids`` that have ended, freshly read from the database."""
    query = (
        select(Job)
        .where(in_array(Job.id, ids), Job.state.in_(TERMINAL_STATES))
        .order_by(Job.id)
        # Results may have been written with a bulk UPDATE: refresh any stale loaded copy.
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(query))


def lock_groups(session: Session, *, ids: Sequence[uuid.UUID]) -> list[JobGroup]:
    """Lock groups in id order, so two finishing transactions cannot deadlock."""
    if not ids:
        return []
    query = select(JobGroup).where(in_array(JobGroup.id, ids)).order_by(JobGroup.id)
    return list(session.scalars(query.with_for_update()))


# Reads for app/batching -----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The waiting jobs of one (provider, model, mode): count, estimated tokens and bytes,
    and when the oldest was routed."""

    provider: str
    model: str
    mode: JobMode
    size: int
    tokens: int
    bytes: int
    oldest: datetime


def open_windows(session: Session) -> list[Window]:
    """Waiting jobs grouped by (provider, model, mode)."""
    query = (
        select(
            Job.provider,
            Job.model,
            Job.mode,
            func.count(),
            func.coalesce(func.sum(Job.estimated_tokens), 0),
            func.coalesce(func.sum(Job.estimated_bytes), 0),
            func.min(Job.routed_at),
        )
        .where(Job.state == JobState.waiting, Job.coalesced_with.is_(None))
        .group_by(Job.provider, Job.model, Job.mode)
    )
    return [
        Window(provider, model, mode, size, int(tokens or 0), int(nbytes or 0), oldest)
        for provider, model, mode, size, tokens, nbytes, oldest in session.execute(query)
        # Waiting jobs are always routed; the guard keeps the types honest.
        if provider and model and mode and oldest
    ]


def has_waiting(session: Session, *, provider: str, model: str, mode: JobMode) -> bool:
    """Whether any job waits in the (provider, model, mode) window."""
    query = (
        select(Job.id)
        .where(
            Job.state == JobState.waiting,
            Job.coalesced_with.is_(None),  # followers wait on their leader
            Job.provider == provider,
            Job.model == model,
            Job.mode == mode,
        )
        .limit(1)
    )
    return session.scalar(query) is not None


def window_tenants(
    session: Session, *, provider: str, model: str, mode: JobMode
) -> dict[uuid.UUID, int]:
    """How many jobs each tenant has waiting in a window."""
    query = (
        select(Job.tenant_id, func.count())
        .where(
            Job.state == JobState.waiting,
            Job.coalesced_with.is_(None),  # followers wait on their leader
            Job.provider == provider,
            Job.model == model,
            Job.mode == mode,
        )
        .group_by(Job.tenant_id)
    )
    return {tenant_id: int(count) for tenant_id, count in session.execute(query)}


def lock_waiting(
    session: Session,
    *,
    provider: str,
    model: str,
    mode: JobMode,
    limit: int,
    tenant_id: uuid.UUID | None = None,
) -> list[tuple[uuid.UUID, int | None, int | None]]:
    """Lock up to ``limit`` waiting jobs of a window (of one tenant's, if given), highest
    priority then oldest first: (id, estimated tokens, estimated bytes).

    ``FOR UPDATE SKIP LOCKED`` makes concurrent collectors take disjoint rows, so no job is
    ever claimed into two batches.
    """
    tenant = [] if tenant_id is None else [Job.tenant_id == tenant_id]
    query = (
        select(Job.id, Job.estimated_tokens, Job.estimated_bytes)
        .where(
            Job.state == JobState.waiting,
            Job.coalesced_with.is_(None),  # followers wait on their leader
            Job.provider == provider,
            Job.model == model,
            Job.mode == mode,
            *tenant,
        )
        .order_by(Job.priority.desc(), Job.routed_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(query).all())


@dataclass(frozen=True)
class BatchJob:
    """What building a job's provider request needs (``app.kit.prompts.Request``)."""

    id: uuid.UUID
    prompt: str | None
    document: str | None
    instruction: str | None
    system: str | None
    max_output_tokens: int | None
    temperature: float | None
    history: list[ChatMessage] | None


_BATCH_JOB_COLUMNS = tuple(getattr(Job, f.name) for f in fields(BatchJob))


def batch_jobs(session: Session, *, batch_id: uuid.UUID, state: JobState) -> list[BatchJob]:
    """A batch's jobs in ``state``, in id order, with what building their requests needs."""
    query = (
        select(*_BATCH_JOB_COLUMNS)
        .where(Job.provider_batch_id == batch_id, Job.state == state)
        .order_by(Job.id)
    )
    return [BatchJob(*row) for row in session.execute(query)]


@dataclass(frozen=True)
class BatchMember:
    """What applying a result (or retrying a job) needs of it: not its prompt or document
    (``request_texts`` reads those for the answers the cache keeps)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    model: str | None
    mode: JobMode | None
    attempts: int
    cache_key: str | None
    cache_mode: CacheMode


_MEMBER_COLUMNS = tuple(getattr(Job, f.name) for f in fields(BatchMember))


def batch_members(session: Session, *, batch_id: uuid.UUID, state: JobState) -> list[BatchMember]:
    """A batch's jobs in ``state``."""
    query = select(*_MEMBER_COLUMNS).where(Job.provider_batch_id == batch_id, Job.state == state)
    return [BatchMember(*row) for row in session.execute(query)]


class RequestText(NamedTuple):
    """A job's request text, as the cache stores it beside an answer."""

    prompt: str | None
    document: str | None


def request_texts(session: Session, *, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RequestText]:
    """The prompt and document of each job among ``ids``."""
    if not ids:
        return {}
    query = select(Job.id, Job.prompt, Job.document).where(in_array(Job.id, ids))
    return {
        job_id: RequestText(prompt, document) for job_id, prompt, document in session.execute(query)
    }


class RouteFacts(NamedTuple):
    """What sending a job down its model's fallback chain needs of it."""

    model_hint: str | None
    requested_mode: RequestedMode
    deadline: datetime | None
    estimated_tokens: int | None
    route_reason: str | None
    routing: dict[str, Any] | None
    attempts: int


def route_facts(session: Session, *, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RouteFacts]:
    columns = [getattr(Job, name) for name in RouteFacts._fields]
    query = select(Job.id, *columns).where(in_array(Job.id, ids))
    return {row[0]: RouteFacts(*row[1:]) for row in session.execute(query)}


def has_jobs(session: Session, *, batch_id: uuid.UUID, state: JobState) -> bool:
    """Whether any job of the batch is in ``state``."""
    query = select(Job.id).where(Job.provider_batch_id == batch_id, Job.state == state).limit(1)
    return session.scalar(query) is not None


def stale_jobs(
    session: Session, *, state: JobState, before: datetime, limit: int
) -> list[uuid.UUID]:
    """Jobs in ``state`` not updated since ``before``, least recently updated first."""
    query = (
        select(Job.id)
        .where(Job.state == state, Job.updated_at < before)
        .order_by(Job.updated_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def stranded_submitted(
    session: Session, *, before: datetime, limit: int, open_batches: Select[uuid.UUID]
) -> list[BatchMember]:
    """Lock submitted jobs whose batch ended (or vanished) without giving them an outcome:
    it is not among ``open_batches`` (the batches still at the provider, a query batching
    hands in)."""
    query = (
        select(*_MEMBER_COLUMNS)
        .where(
            Job.state == JobState.submitted,
            Job.updated_at < before,
            or_(Job.provider_batch_id.is_(None), Job.provider_batch_id.not_in(open_batches)),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [BatchMember(*row) for row in session.execute(query)]


class EndedFacts(NamedTuple):
    """What the ledger records of an ended job (besides its cost chain)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    group_id: uuid.UUID | None
    state: JobState
    provider: str | None
    model: str | None
    mode: JobMode | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cache_write_tokens: int | None
    created_at: datetime
    completed_at: datetime | None
    deadline: datetime | None


_ENDED_COLUMNS = tuple(getattr(Job, name) for name in EndedFacts._fields)


def ended_facts(session: Session, *, ids: Sequence[uuid.UUID]) -> list[EndedFacts]:
    """The facts of the jobs among ``ids`` that have ended."""
    query = select(*_ENDED_COLUMNS).where(in_array(Job.id, ids), Job.state.in_(TERMINAL_STATES))
    return [EndedFacts(*row) for row in session.execute(query)]
