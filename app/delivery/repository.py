"""Queries for webhook endpoints, secrets, deliveries and attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import (
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
)


def endpoints_of(session: Session, *, tenant_id: uuid.UUID) -> list[WebhookEndpoint]:
    query = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(session.scalars(query))


def enabled_endpoints(
    session: Session, *, tenant_ids: Sequence[uuid.UUID]
) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id.in_(tenant_ids), WebhookEndpoint.disabled_at.is_(None)
    )
    return list(session.scalars(query))


def get_endpoint(
    session: Session, *, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, lock: bool = False
) -> WebhookEndpoint | None:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def lock_endpoint_url(session: Session, *, tenant_id: uuid.UUID, url: str) -> None:
    """Serialise registrations of one URL by one tenant until the transaction ends."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"webhook-endpoint:{tenant_id}:{url}"},
    )


def endpoint_by_url(session: Session, *, tenant_id: uuid.UUID, url: str) -> WebhookEndpoint | None:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.url == url
    )
    return session.scalars(query).first()


def endpoint_by_id(session: Session, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    return session.get(WebhookEndpoint, endpoint_id)


def tenant_secret(
    session: Session, *, tenant_id: uuid.UUID, lock: bool = False
) -> WebhookSecret | None:
    query = select(WebhookSecret).where(WebhookSecret.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def insert_tenant_secret(session: Session, *, tenant_id: uuid.UUID, secret: str) -> None:
    """Create the tenant's secret unless a concurrent transaction just did."""
    session.execute(
        insert(WebhookSecret)
        .values(tenant_id=tenant_id, secret=secret)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to record: one event for one receiver, with the exact body to send."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    # None for a job's own webhook_url.
    endpoint_id: uuid.UUID | None
    job_id: uuid.UUID | None
    group_id: uuid.UUID | None
    event: str
    dedup_key: str
    message_id: str
    url: str
    body: str
    next_attempt_at: datetime
    # Set when a hint is sent at once, so the dispatcher leaves the delivery to it.
    enqueued_at: datetime | None
    created_at: datetime


_NEW_DELIVERY_COLUMNS = tuple(field.name for field in fields(NewDelivery))


def insert_deliveries(session: Session, rows: Sequence[NewDelivery]) -> list[uuid.UUID]:
    """Insert pending deliveries; one already recorded for the same event and receiver is
    skipped. Returns the ids inserted."""
    if not rows:
        return []
    statement = (
        insert(WebhookDelivery)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(WebhookDelivery.id)
    )
    # Executemany: SQLAlchemy batches the rows into multi-row INSERTs ("insertmanyvalues").
    parameters = [{name: getattr(row, name) for name in _NEW_DELIVERY_COLUMNS} for row in rows]
    return list(session.scalars(statement, parameters))


def lock_due(session: Session, *, delivery_id: uuid.UUID, now: datetime) -> WebhookDelivery | None:
    """The delivery if it is pending and due; None if another worker holds it."""
    query = (
        select(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.state == DeliveryState.pending,
            WebhookDelivery.next_attempt_at <= now,
        )
        .with_for_update(skip_locked=True)
    )
    return session.scalars(query).one_or_none()


# A delivery's receiver: the scheme, host and port of its URL.
_RECEIVER_PATTERN = r"^[^:]+://[^/?#]+"
_RECEIVER = func.substring(WebhookDelivery.url, _RECEIVER_PATTERN)


def claim_due(
    session: Session,
    *,
    now: datetime,
    stale_before: datetime,
    limit: int,
    per_receiver: int | None = None,
    receiver_of: str | None = None,
) -> list[uuid.UUID]:
    """Due deliveries with no fresh hint in flight; marks them hinted now. With
    ``per_receiver``, no receiver gets more than that many fresh hints in all (those already
    out count), so a slow receiver's backlog never fills the delivery queue. With
    ``receiver_of`` (a URL), only the deliveries to that URL's receiver.

    ``SKIP LOCKED`` leaves alone the rows a worker is attempting at this moment.
    """
    due = [
        WebhookDelivery.state == DeliveryState.pending,
        WebhookDelivery.next_attempt_at <= now,
        (WebhookDelivery.enqueued_at.is_(None)) | (WebhookDelivery.enqueued_at < stale_before),
    ]
    if receiver_of is not None:
        due.append(func.substring(literal(receiver_of), _RECEIVER_PATTERN) == _RECEIVER)
    candidates = select(WebhookDelivery.id).where(*due)
    if per_receiver is not None:
        hinted = (
            select(_RECEIVER.label("receiver"), func.count().label("out"))
            .where(
                WebhookDelivery.state == DeliveryState.pending,
                WebhookDelivery.enqueued_at >= stale_before,
            )
            .group_by(_RECEIVER)
            .subquery()
        )
        ranked = (
            select(
                WebhookDelivery.id.label("id"),
                _RECEIVER.label("receiver"),
                func.row_number()
                .over(partition_by=_RECEIVER, order_by=WebhookDelivery.next_attempt_at)
                .label("rank"),
            )
            .where(*due)
            .subquery()
        )
        candidates = (
            candidates.join(ranked, ranked.c.id == WebhookDelivery.id)
            .outerjoin(hinted, hinted.c.receiver == ranked.c.receiver)
            .where(ranked.c.rank + func.coalesce(hinted.c.out, 0) <= per_receiver)
        )
    candidates = (
        candidates.order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    )
    ids = list(session.scalars(candidates))
    if ids:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(enqueued_at=now)
        )
    return ids


def take_receiver_slot(session: Session, *, url: str, slots: int) -> bool:
    """Take one of ``slots`` transaction-long locks of the URL's receiver; False when every
    one is held (that many attempts to it are in flight already)."""
    query = text(
        "SELECT s FROM generate_series(0, :last) AS s "
        "WHERE pg_try_advisory_xact_lock(hashtext(substring(:url from '^[^:]+://[^/?#]+')), s) "
        "LIMIT 1"
    )
    return session.execute(query, {"last": slots - 1, "url": url}).first() is not None


def get_delivery(
    session: Session, *, tenant_id: uuid.UUID, delivery_id: uuid.UUID, lock: bool = False
) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.tenant_id == tenant_id
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def list_deliveries(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    state: DeliveryState | None,
    endpoint_id: uuid.UUID | None,
    job_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[WebhookDelivery]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if job_id is not None:
        query = query.where(WebhookDelivery.job_id == job_id)
    if before is not None:
        created_at, delivery_id = before
        query = query.where(
            (WebhookDelivery.created_at < created_at)
            | ((WebhookDelivery.created_at == created_at) & (WebhookDelivery.id < delivery_id))
        )
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    return list(session.scalars(query.limit(limit)))


def attempts_of(session: Session, *, delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    query = (
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.number)
    )
    return list(session.scalars(query))


def last_attempt_number(session: Session, *, delivery_id: uuid.UUID) -> int:
    query = select(func.coalesce(func.max(WebhookAttempt.number), 0)).where(
        WebhookAttempt.delivery_id == delivery_id
    )
    return int(session.scalar(query) or 0)


def kill_pending(session: Session, *, endpoint_id: uuid.UUID, reason: str) -> int:
    """Dead-letter an endpoint's pending deliveries (it was disabled)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.state == DeliveryState.pending,
        )
        .values(state=DeliveryState.dead, last_error=reason, next_attempt_at=None)
        .returning(WebhookDelivery.id)
    )
    return len(result.all())
