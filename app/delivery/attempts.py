"""Attempting deliveries: the dispatcher's hints, one signed POST, and what follows it.

The Celery message for a delivery is only a hint; ``dispatch_due`` (run by beat) re-sends a
hint for every due delivery whose hint is missing or stale, so a lost message delays a
delivery but never loses it. Every attempt is a row.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.delivery import addresses, repository, sender, signing, subscriptions
from app.delivery.config import WebhookConfig
from app.kit import queue
from app.models import DeliveryState, WebhookAttempt, utcnow

log = logging.getLogger(__name__)

# Deliveries per dispatcher run; the next run takes the rest.
DISPATCH_LIMIT = 1000
# How long a delivery waits when its receiver already has every slot busy (not an attempt).
BUSY_RECEIVER_DELAY = timedelta(seconds=2)


def retry_delay(
    attempts_made: int, config: WebhookConfig, rng: random.Random | None = None
) -> float:
    """Seconds from attempt ``attempts_made`` to the next one: the schedule with jitter.

    ``retry_schedule[n]`` is the delay before attempt ``n + 1``; past its end the last delay
    repeats. The delay is multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` so
    that receivers coming back from an outage are not hit by every retry at once.
    """
    schedule = config.retry_schedule
    base = schedule[min(attempts_made, len(schedule) - 1)]
    return base * (rng or random).uniform(1 - config.jitter, 1 + config.jitter)


def dispatch_due(
    session: Session,
    *,
    stale_after: timedelta,
    now: datetime | None = None,
    per_receiver: int | None = None,
) -> list[uuid.UUID]:
    """Send a hint for every due delivery whose hint is missing or stale (beat calls this),
    at most ``per_receiver`` out at once for any one receiver."""
    now = now or utcnow()
    ids = repository.claim_due(
        session,
        now=now,
        stale_before=now - stale_after,
        limit=DISPATCH_LIMIT,
        per_receiver=per_receiver,
    )
    for delivery_id in ids:
        queue.enqueue(session, queue.DELIVER_WEBHOOK, str(delivery_id))
    return ids


def deliver(
    session: Session,
    *,
    delivery_id: uuid.UUID,
    config: WebhookConfig,
    now: datetime | None = None,
) -> DeliveryState | None:
    """Make one attempt of a due delivery and schedule what follows.

    Returns None when the delivery is not due or another worker holds it. The row stays
    locked during the HTTP call, so one delivery is never attempted twice at once.
    """
    now = now or utcnow()
    delivery = repository.lock_due(session, delivery_id=delivery_id, now=now)
    if delivery is None:
        return None
    endpoint = (
        repository.endpoint_by_id(session, delivery.endpoint_id) if delivery.endpoint_id else None
    )
    if endpoint is not None and endpoint.disabled_at is not None:
        delivery.state = DeliveryState.dead
        delivery.next_attempt_at = None
        delivery.last_error = f"endpoint disabled: {endpoint.disabled_reason}"
        session.flush()
        return delivery.state

    if not repository.take_receiver_slot(
        session, url=delivery.url, slots=config.receiver_concurrency
    ):
        # As many attempts to this receiver are in flight as it may have: a slow receiver
        # holds that many threads, never the whole pool. Not an attempt; tried again soon.
        delivery.next_attempt_at = now + BUSY_RECEIVER_DELAY
        delivery.enqueued_at = None
        session.flush()
        return None

    number = repository.last_attempt_number(session, delivery_id=delivery.id) + 1
    delivery.attempt_count += 1
    address: str | None = None
    try:
        target = addresses.check(delivery.url, config.policy)
    except addresses.RefusedURL as exc:
        outcome = sender.Outcome(status_code=None, error=f"refused: {exc}", duration_ms=0)
    else:
        holder = endpoint or subscriptions.tenant_secret_holder(
            session, tenant_id=delivery.tenant_id
        )
        timestamp = int(time.time())
        headers = {
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header(
                subscriptions.signing_secrets(holder, now=now),
                message_id=delivery.message_id,
                timestamp=timestamp,
                body=delivery.body,
            ),
        }
        outcome = sender.post(
            target, body=delivery.body, headers=headers, timeout=config.timeout_seconds
        )
        address = outcome.address

    attempt = WebhookAttempt(
        delivery_id=delivery.id,
        number=number,
        started_at=now,
        duration_ms=outcome.duration_ms,
        address=address,
        status_code=outcome.status_code,
        error=outcome.error,
        response_excerpt=outcome.excerpt,
    )
    session.add(attempt)
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    delivery.enqueued_at = None
    if outcome.ok:
        delivery.state = DeliveryState.succeeded
        delivery.delivered_at = utcnow()
        delivery.next_attempt_at = None
    elif outcome.status_code == 410:
        delivery.state = DeliveryState.dead
        delivery.next_attempt_at = None
        if endpoint is not None:
            subscriptions.disable_endpoint(
                session, endpoint, reason="the receiver answered 410 Gone"
            )
    elif delivery.attempt_count >= config.max_attempts:
        delivery.state = DeliveryState.dead
        delivery.next_attempt_at = None
        delivery.last_error = (
            f"{outcome.error}; dead-lettered after {delivery.attempt_count} attempts"
        )
    else:
        delay = retry_delay(delivery.attempt_count, config)
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, config.max_retry_after_seconds))
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        attempt.next_attempt_at = delivery.next_attempt_at
    session.flush()
    if delivery.state != DeliveryState.succeeded:
        log.info("webhook %s attempt %d: %s", delivery.id, number, outcome.error)
    _hint_next(session, url=delivery.url, now=now, config=config)
    return delivery.state


def _hint_next(session: Session, *, url: str, now: datetime, config: WebhookConfig) -> None:
    """This attempt's receiver slot is free once it commits: hint the receiver's next due
    deliveries now, up to its concurrency, so a fast receiver is not paced by the
    dispatcher's runs (at most ``receiver_concurrency`` a second)."""
    ids = repository.claim_due(
        session,
        now=now,
        stale_before=now - timedelta(seconds=config.stale_after_seconds),
        limit=config.receiver_concurrency,
        per_receiver=config.receiver_concurrency,
        receiver_of=url,
    )
    for delivery_id in ids:
        queue.enqueue(session, queue.DELIVER_WEBHOOK, str(delivery_id))
