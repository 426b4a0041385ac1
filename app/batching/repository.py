from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.orm import Session

from app.kit.db import in_array, update_by_id
from app.models import BatchState, CacheMode, Job, JobState, ProviderBatch, utcnow


@dataclass(frozen=True)
class Window:
    provider: str
    model: str
    mode: str
    size: int
    tokens: int
    bytes: int
    oldest: datetime


@dataclass(frozen=True)
class Claimed:
    batch: ProviderBatch
    count: int
    tokens: int
    bytes: int


def open_windows(session: Session) -> list[Window]:
    """Waiting jobs grouped by (provider, model, mode): count, estimated tokens and bytes,
    and the oldest routing time."""
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
        .where(Job.state == JobState.waiting)
        .group_by(Job.provider, Job.model, Job.mode)
    )
    return [
        Window(provider, model, mode, size, int(tokens or 0), int(nbytes or 0), oldest)
        for provider, model, mode, size, tokens, nbytes, oldest in session.execute(query)
        # Waiting jobs are always routed; the guard keeps the types honest.
        if provider and model and mode and oldest
    ]


def fitting_prefix(
    estimates: Sequence[tuple[int | None, int | None]], *, max_tokens: int, max_bytes: int
) -> tuple[int, int, int]:
    """How many of the leading (tokens, bytes) estimates fit under both caps, with their sums.

    A single job over a cap still counts, alone: it has to leave in some batch.
    """
    count = tokens = nbytes = 0
    for job_tokens, job_bytes in estimates:
        job_tokens, job_bytes = job_tokens or 0, job_bytes or 0
        if count and (tokens + job_tokens > max_tokens or nbytes + job_bytes > max_bytes):
            break
        count, tokens, nbytes = count + 1, tokens + job_tokens, nbytes + job_bytes
    return count, tokens, nbytes


def has_waiting(session: Session, *, provider: str, model: str, mode: str) -> bool:
    """Whether any job waits in the (provider, model, mode) window."""
    query = (
        select(Job.id)
        .where(
            Job.state == JobState.waiting,
            Job.provider == provider,
            Job.model == model,
            Job.mode == mode,
        )
        .limit(1)
    )
    return session.scalar(query) is not None


def add_batch(session: Session, *, provider: str, model: str, mode: str, size: int) -> uuid.UUID:
    """A new pending provider batch of ``size`` jobs; returns its id."""
    batch = ProviderBatch(provider=provider, model=model, mode=mode, request_count=size)
    session.add(batch)
    session.flush()
    return batch.id


def claim(
    session: Session,
    *,
    provider: str,
    model: str,
    mode: str,
    max_size: int,
    max_tokens: int,
    max_bytes: int,
) -> Claimed | None:
    """Move waiting jobs, highest priority then oldest first, into a new pending batch.

    Takes at most ``max_size`` jobs and stops before the estimated tokens or bytes would pass
    their caps (a single job over a cap still goes, alone). ``FOR UPDATE SKIP LOCKED`` makes
    concurrent collectors take disjoint rows, so no job is ever in two batches.
    """
    candidates = (
        select(Job.id, Job.estimated_tokens, Job.estimated_bytes)
        .where(
            Job.state == JobState.waiting,
            Job.provider == provider,
            Job.model == model,
            Job.mode == mode,
        )
        .order_by(Job.priority.desc(), Job.routed_at, Job.id)
        .limit(max_size)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(candidates).all()
    count, tokens, nbytes = fitting_prefix(
        [(row[1], row[2]) for row in rows], max_tokens=max_tokens, max_bytes=max_bytes
    )
    if not count:
        return None
    batch = ProviderBatch(provider=provider, model=model, mode=mode, request_count=count)
    session.add(batch)
    session.flush()
    session.execute(
        update(Job)
        .where(in_array(Job.id, [row[0] for row in rows[:count]]))
        .values(state=JobState.batched, provider_batch_id=batch.id, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return Claimed(batch, count, tokens, nbytes)


def lock_batch(session: Session, *, batch_id: uuid.UUID, state: BatchState) -> ProviderBatch | None:
    query = (
        select(ProviderBatch)
        .where(ProviderBatch.id == batch_id, ProviderBatch.state == state)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).one_or_none()


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


_BATCH_JOB_COLUMNS = tuple(getattr(Job, f.name) for f in fields(BatchJob))


def batch_jobs(session: Session, *, batch_id: uuid.UUID, state: JobState) -> list[BatchJob]:
    """A batch's jobs in ``state``, in id order, with what building their requests needs."""
    query = (
        select(*_BATCH_JOB_COLUMNS)
        .where(Job.provider_batch_id == batch_id, Job.state == state)
        .order_by(Job.id)
    )
    return [BatchJob(*row) for row in session.execute(query)]


def record_attempt(session: Session, *, batch_id: uuid.UUID) -> int | None:
    """Count one more submission attempt of a pending batch; None if it is not pending."""
    statement = (
        update(ProviderBatch)
        .where(ProviderBatch.id == batch_id, ProviderBatch.state == BatchState.pending)
        .values(submit_attempts=ProviderBatch.submit_attempts + 1)
        .returning(ProviderBatch.submit_attempts)
    )
    return session.scalar(statement)


@dataclass(frozen=True)
class Member:
    """What applying a result needs of a job; the cache controls and request text are what
    the cache stores with the answer (it does not read the jobs table)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    model: str | None
    mode: str | None
    attempts: int
    cache_key: str | None
    cache_mode: CacheMode
    prompt: str | None
    document: str | None


def batch_members(session: Session, *, batch_id: uuid.UUID, state: JobState) -> list[Member]:
    query = select(
        Job.id, Job.tenant_id, Job.model, Job.mode, Job.attempts, Job.cache_key,
        Job.cache_mode, Job.prompt, Job.document,
    ).where(Job.provider_batch_id == batch_id, Job.state == state)  # fmt: skip
    return [Member(*row) for row in session.execute(query)]


def has_jobs(session: Session, *, batch_id: uuid.UUID, state: JobState) -> bool:
    query = select(Job.id).where(Job.provider_batch_id == batch_id, Job.state == state).limit(1)
    return session.scalar(query) is not None


def set_jobs_state(
    session: Session, *, batch_id: uuid.UUID, from_state: JobState, values: dict[str, Any]
) -> None:
    # No ORM synchronisation: matching a thousand loaded objects in Python cost more than the
    # UPDATE itself; callers re-read rows they need.
    session.execute(
        update(Job)
        .where(Job.provider_batch_id == batch_id, Job.state == from_state)
        .values(updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )


def release(session: Session, *, job_ids: Sequence[uuid.UUID]) -> None:
    """Send claimed, unsent jobs back to their window."""
    session.execute(
        update(Job)
        .where(in_array(Job.id, job_ids), Job.state == JobState.batched)
        .values(state=JobState.waiting, provider_batch_id=None, updated_at=utcnow())
    )


def batch_ids_in_state(session: Session, *, state: BatchState) -> list[uuid.UUID]:
    query = (
        select(ProviderBatch.id)
        .where(ProviderBatch.state == state)
        .order_by(ProviderBatch.created_at)
    )
    return list(session.scalars(query))


def batches_due_for_poll(session: Session, *, now: datetime) -> list[uuid.UUID]:
    query = (
        select(ProviderBatch.id)
        .where(
            ProviderBatch.state == BatchState.submitted,
            or_(ProviderBatch.next_poll_at.is_(None), ProviderBatch.next_poll_at <= now),
        )
        .order_by(ProviderBatch.created_at)
    )
    return list(session.scalars(query))


def lease_due_polls(session: Session, *, now: datetime, until: datetime) -> list[uuid.UUID]:
    """Batches due for a poll, each held until ``until`` so the next tick does not hand it
    out again while its poll waits in the queue (the poll sets its real next time)."""
    statement = (
        update(ProviderBatch)
        .where(
            ProviderBatch.state == BatchState.submitted,
            or_(ProviderBatch.next_poll_at.is_(None), ProviderBatch.next_poll_at <= now),
        )
        .values(next_poll_at=until)
        .returning(ProviderBatch.id)
    )
    return list(session.scalars(statement))


def apply_results(
    session: Session, rows: Sequence[dict[str, Any]], *, from_state: JobState
) -> None:
    """Write results by job id, only onto jobs still in ``from_state`` (a re-poll is a no-op,
    and a job cancelled meanwhile keeps ``cancelled``).

    One ``UPDATE ... FROM unnest(arrays)`` for the whole batch: a thousand results cost one
    round trip and one statement, not a thousand.
    """
    columns = ("result", "error", "input_tokens", "output_tokens", "cost_usd", "naive_cost_usd",
               "completed_at")  # fmt: skip
    values = [
        {"id": row["job_id"], "state": row["new_state"], "updated_at": row["completed_at"]}
        | {name: row[name] for name in columns}
        for row in rows
    ]
    # The guard is fixed text: the state is one of our enum's values.
    update_by_id(
        session, cast(Table, Job.__table__), values, guard=f"jobs.state = '{from_state.value}'"
    )


def requeue(session: Session, rows: Sequence[dict[str, Any]], *, from_state: JobState) -> None:
    """Put jobs whose request failed retryably back in a window (``job_id``, ``attempts``,
    ``new_mode``, ``error``), for a later batch; only jobs still in ``from_state``."""
    now = utcnow()
    values = [
        {"id": row["job_id"], "state": JobState.waiting, "provider_batch_id": None,
         "attempts": row["attempts"], "mode": row["new_mode"], "error": row["error"],
         "updated_at": now}
        for row in rows
    ]  # fmt: skip
    # The guard is fixed text: the state is one of our enum's values.
    guard = f"jobs.state = '{from_state.value}'"
    update_by_id(session, cast(Table, Job.__table__), values, guard=guard)


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


def release_orphans(session: Session, *, before: datetime) -> list[uuid.UUID]:
    """Claimed jobs whose batch is gone or no longer pending go back to their window."""
    live = select(ProviderBatch.id).where(ProviderBatch.state == BatchState.pending)
    statement = (
        update(Job)
        .where(
            Job.state == JobState.batched,
            Job.updated_at < before,
            or_(Job.provider_batch_id.is_(None), Job.provider_batch_id.not_in(live)),
        )
        .values(state=JobState.waiting, provider_batch_id=None, updated_at=utcnow())
        .returning(Job.id)
    )
    return list(session.scalars(statement))


def stranded_submitted(session: Session, *, before: datetime, limit: int) -> list[Job]:
    """Submitted jobs whose batch ended (or vanished) without giving them an outcome."""
    open_batches = select(ProviderBatch.id).where(ProviderBatch.state == BatchState.submitted)
    query = (
        select(Job)
        .where(
            Job.state == JobState.submitted,
            Job.updated_at < before,
            or_(Job.provider_batch_id.is_(None), Job.provider_batch_id.not_in(open_batches)),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def route_of(session: Session, *, batch_id: uuid.UUID) -> tuple[str, str] | None:
    row = session.execute(
        select(ProviderBatch.provider, ProviderBatch.mode).where(ProviderBatch.id == batch_id)
    ).one_or_none()
    return (row[0], row[1]) if row else None
