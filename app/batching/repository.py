"""Queries and writes of the ``provider_batches`` table; the jobs in a batch are read and
written through ``app/jobs`` (``repository`` and ``transitions``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from app.catalog.catalog import ModelConfig
from app.models import BatchState, JobMode, ProviderBatch


def add_batch(
    session: Session,
    *,
    provider: str,
    model: str,
    mode: JobMode,
    size: int,
    prices: ModelConfig | None = None,
) -> uuid.UUID:
    """A new pending provider batch of ``size`` jobs, with the model's ``prices`` of now;
    returns its id."""
    batch = ProviderBatch(provider=provider, model=model, mode=mode, request_count=size)
    if prices is not None:
        batch.input_per_mtok = prices.input_per_mtok
        batch.output_per_mtok = prices.output_per_mtok
        batch.batch_discount = prices.batch_discount
    session.add(batch)
    session.flush()
    return batch.id


def ids_in_state(state: BatchState) -> Select[uuid.UUID]:
    """The ids of batches in ``state``, as a subquery for statements on their jobs."""
    return select(ProviderBatch.id).where(ProviderBatch.state == state)


def route_of(session: Session, *, batch_id: uuid.UUID) -> tuple[str, JobMode, str] | None:
    """(provider, mode, model) of a batch, or None for an unknown batch."""
    row = session.execute(
        select(ProviderBatch.provider, ProviderBatch.mode, ProviderBatch.model).where(
            ProviderBatch.id == batch_id
        )
    ).one_or_none()
    return (row[0], row[1], row[2]) if row else None


def lock_batch(session: Session, *, batch_id: uuid.UUID, state: BatchState) -> ProviderBatch | None:
    """The batch, locked, if it is in ``state`` and no other worker holds it."""
    query = (
        select(ProviderBatch)
        .where(ProviderBatch.id == batch_id, ProviderBatch.state == state)
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).one_or_none()


def attempted(session: Session, *, batch_id: uuid.UUID) -> bool:
    """Whether a submission of the batch was ever started (it may be at its provider)."""
    query = select(ProviderBatch.submit_attempts).where(ProviderBatch.id == batch_id)
    return bool(session.scalar(query))


def record_attempt(session: Session, *, batch_id: uuid.UUID) -> int | None:
    """Count one more submission attempt of a pending batch; None if it is not pending."""
    statement = (
        update(ProviderBatch)
        .where(ProviderBatch.id == batch_id, ProviderBatch.state == BatchState.pending)
        .values(submit_attempts=ProviderBatch.submit_attempts + 1)
        .returning(ProviderBatch.submit_attempts)
    )
    return session.scalar(statement)


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


def poll_now(session: Session) -> list[uuid.UUID]:
    """Make every submitted batch due for a poll now (its lease or backoff dropped)."""
    statement = (
        update(ProviderBatch)
        .where(ProviderBatch.state == BatchState.submitted)
        .values(next_poll_at=None)
        .returning(ProviderBatch.id)
    )
    return list(session.scalars(statement))


def stale_batches(session: Session, *, state: BatchState, before: datetime) -> list[uuid.UUID]:
    """Batches in ``state`` not updated since ``before``."""
    query = select(ProviderBatch.id).where(
        ProviderBatch.state == state, ProviderBatch.updated_at < before
    )
    return list(session.scalars(query))


def lock_open_batches(session: Session, *, batch_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Of ``batch_ids``, the Batch API batches still pending or submitted, locked; a batch a
    submitter or poller holds is skipped (its work is looked at again on the next sweep)."""
    query = (
        select(ProviderBatch.id)
        .where(
            ProviderBatch.id.in_(batch_ids),
            ProviderBatch.mode == JobMode.batch,
            ProviderBatch.state.in_((BatchState.pending, BatchState.submitted)),
        )
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def open_batch_ids() -> Select[uuid.UUID]:
    """The ids of batches not yet ended (pending or submitted), as a subquery."""
    return select(ProviderBatch.id).where(
        ProviderBatch.state.in_((BatchState.pending, BatchState.submitted))
    )
