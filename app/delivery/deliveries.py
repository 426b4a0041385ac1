"""Reading deliveries and their attempts, and redelivering one by hand."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.delivery import repository
from app.delivery.schemas import AttemptOut, DeliveryDetail, DeliveryOut, DeliveryPage
from app.kit import queue
from app.kit.errors import Conflict, NotFound, ValidationFailed
from app.models import DeliveryState, Tenant, WebhookDelivery, utcnow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        message_id=delivery.message_id,
        event=delivery.event,
        endpoint_id=delivery.endpoint_id,
        job_id=delivery.job_id,
        group_id=delivery.group_id,
        url=delivery.url,
        state=delivery.state,
        attempt_count=delivery.attempt_count,
        next_attempt_at=delivery.next_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


def _cursor(delivery: WebhookDelivery) -> str:
    # Microseconds since the epoch: exact, and safe in a query string unencoded.
    micros = (delivery.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{delivery.id}"


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        micros, _, raw_id = cursor.partition("_")
        return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(raw_id)
    except (ValueError, OverflowError) as exc:
        # OverflowError: microseconds past the datetime range (a forged cursor).
        raise ValidationFailed(f"before: malformed cursor {cursor[:100]!r}") from exc


def list_deliveries(
    session: Session,
    *,
    tenant: Tenant,
    state: DeliveryState | None = None,
    endpoint_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    before: str | None = None,
    limit: int = 100,
) -> DeliveryPage:
    """The tenant's deliveries, newest first, optionally filtered."""
    rows = repository.list_deliveries(
        session,
        tenant_id=tenant.id,
        state=state,
        endpoint_id=endpoint_id,
        job_id=job_id,
        before=_parse_cursor(before) if before else None,
        limit=limit,
    )
    return DeliveryPage(
        data=[_delivery_out(d) for d in rows],
        next_before=_cursor(rows[-1]) if len(rows) == limit else None,
    )


def get_delivery(session: Session, *, tenant: Tenant, delivery_id: uuid.UUID) -> DeliveryDetail:
    """One delivery with its exact body and every attempt."""
    delivery = repository.get_delivery(session, tenant_id=tenant.id, delivery_id=delivery_id)
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    attempts = [
        AttemptOut(
            number=a.number,
            started_at=a.started_at,
            duration_ms=a.duration_ms,
            address=a.address,
            status_code=a.status_code,
            error=a.error,
            response_excerpt=a.response_excerpt,
            next_attempt_at=a.next_attempt_at,
        )
        for a in repository.attempts_of(session, delivery_id=delivery.id)
    ]
    return DeliveryDetail(
        **_delivery_out(delivery).model_dump(), body=delivery.body, attempts=attempts
    )


def redeliver(session: Session, *, tenant: Tenant, delivery_id: uuid.UUID) -> DeliveryOut:
    """Send a delivery again now, with a fresh retry budget; earlier attempts are kept."""
    delivery = repository.get_delivery(
        session, tenant_id=tenant.id, delivery_id=delivery_id, lock=True
    )
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    if delivery.endpoint_id is not None:
        endpoint = repository.endpoint_by_id(session, delivery.endpoint_id)
        if endpoint is not None and endpoint.disabled_at is not None:
            raise Conflict(
                f"endpoint {endpoint.id} is disabled ({endpoint.disabled_reason}); enable it "
                "first with POST /v1/webhooks/endpoints/{id}/enable"
            )
    now = utcnow()
    delivery.state = DeliveryState.pending
    delivery.attempt_count = 0
    delivery.next_attempt_at = now
    delivery.enqueued_at = now
    delivery.delivered_at = None
    session.flush()
    queue.enqueue(session, queue.DELIVER_WEBHOOK, str(delivery.id))
    return _delivery_out(delivery)
