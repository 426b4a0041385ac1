"""Webhooks: endpoints and secrets, turning finished jobs into deliveries, and attempting them.

A delivery is a Postgres row holding the exact body and when to try next. Finishing a job
inserts its deliveries in the same transaction that finishes it, and the Celery message sent
after commit is only a hint: a beat task picks every due delivery again with ``FOR UPDATE
SKIP LOCKED``, so a lost message delays a delivery but never loses it. Every attempt is a row.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.delivery import addresses, repository, sender, signing
from app.delivery.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    EndpointCreated,
    EndpointIn,
    EndpointOut,
    SecretOut,
)
from app.kit import queue
from app.kit.errors import Conflict, NotFound, ValidationFailed
from app.models import (
    TERMINAL_STATES,
    DeliveryState,
    Job,
    JobState,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSecret,
    utcnow,
)

log = logging.getLogger(__name__)

JOB_EVENTS = {JobState.completed: "job.completed", JobState.failed: "job.failed"}
GROUP_COMPLETED = "group.completed"
# Deliveries per dispatcher run; the next run takes the rest.
DISPATCH_LIMIT = 1000
# Up to this many new deliveries are hinted one by one; more wake the dispatcher once.
DIRECT_HINTS = 20


@dataclass(frozen=True)
class WebhookConfig:
    """The delivery settings, passed explicitly so each call can be given its own."""

    timeout_seconds: float
    retry_schedule: tuple[float, ...]
    max_attempts: int
    jitter: float
    max_retry_after_seconds: float
    policy: addresses.Policy
    max_inline_result_bytes: int
    secret_grace_seconds: float
    public_base_url: str

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> WebhookConfig:
        settings = settings or get_settings()
        return cls(
            timeout_seconds=settings.webhook_timeout_seconds,
            retry_schedule=tuple(settings.webhook_retry_schedule),
            max_attempts=settings.webhook_max_attempts,
            jitter=settings.webhook_retry_jitter,
            max_retry_after_seconds=settings.webhook_max_retry_after_seconds,
            policy=addresses.Policy(
                allow_loopback=settings.webhook_allow_loopback,
                allow_private=settings.webhook_allow_private,
            ),
            max_inline_result_bytes=settings.webhook_max_inline_result_bytes,
            secret_grace_seconds=settings.webhook_secret_grace_seconds,
            public_base_url=settings.public_base_url.rstrip("/"),
        )


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


def check_url(url: str, *, config: WebhookConfig | None = None, field: str = "url") -> None:
    """Refuse (422) a URL that resolves to an address deliveries may not go to."""
    config = config or WebhookConfig.from_settings()
    try:
        addresses.check(url, config.policy)
    except addresses.RefusedURL as exc:
        raise ValidationFailed(
            f"{field} {url} is refused: {exc}",
            details=[{"loc": [field], "message": str(exc), "type": "url_refused"}],
        ) from exc


# Endpoints and secrets ------------------------------------------------------------------------


def _endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        description=endpoint.description,
        created_at=endpoint.created_at,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )


def create_endpoint(
    session: Session, *, tenant: Tenant, data: EndpointIn, config: WebhookConfig | None = None
) -> EndpointCreated:
    """Register a receiver; its generated secret is in the answer and never shown again."""
    url = str(data.url)
    check_url(url, config=config)
    endpoint = WebhookEndpoint(
        tenant_id=tenant.id,
        url=url,
        events=sorted(set(data.events)),
        description=data.description,
        secret=signing.generate_secret(),
    )
    session.add(endpoint)
    session.flush()
    return EndpointCreated(**_endpoint_out(endpoint).model_dump(), secret=endpoint.secret)


def list_endpoints(session: Session, *, tenant: Tenant) -> list[EndpointOut]:
    return [_endpoint_out(e) for e in repository.endpoints_of(session, tenant_id=tenant.id)]


def _endpoint(
    session: Session, *, tenant: Tenant, endpoint_id: uuid.UUID, lock: bool = False
) -> WebhookEndpoint:
    endpoint = repository.get_endpoint(
        session, tenant_id=tenant.id, endpoint_id=endpoint_id, lock=lock
    )
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def get_endpoint(session: Session, *, tenant: Tenant, endpoint_id: uuid.UUID) -> EndpointOut:
    return _endpoint_out(_endpoint(session, tenant=tenant, endpoint_id=endpoint_id))


def delete_endpoint(session: Session, *, tenant: Tenant, endpoint_id: uuid.UUID) -> None:
    """Remove an endpoint together with its deliveries and their attempts."""
    session.delete(_endpoint(session, tenant=tenant, endpoint_id=endpoint_id, lock=True))
    session.flush()


def enable_endpoint(session: Session, *, tenant: Tenant, endpoint_id: uuid.UUID) -> EndpointOut:
    """Re-enable an endpoint that was disabled (after a 410 Gone, for instance)."""
    endpoint = _endpoint(session, tenant=tenant, endpoint_id=endpoint_id, lock=True)
    endpoint.disabled_at = None
    endpoint.disabled_reason = None
    session.flush()
    return _endpoint_out(endpoint)


def _rotate(holder: WebhookEndpoint | WebhookSecret, *, config: WebhookConfig) -> None:
    now = utcnow()
    if config.secret_grace_seconds > 0:
        holder.previous_secret = holder.secret
        holder.previous_secret_expires_at = now + timedelta(seconds=config.secret_grace_seconds)
    else:
        holder.previous_secret = None
        holder.previous_secret_expires_at = None
    holder.secret = signing.generate_secret()


def rotate_endpoint_secret(
    session: Session,
    *,
    tenant: Tenant,
    endpoint_id: uuid.UUID,
    config: WebhookConfig | None = None,
) -> SecretOut:
    """A new secret; the old one keeps signing (a second signature) for the grace period."""
    endpoint = _endpoint(session, tenant=tenant, endpoint_id=endpoint_id, lock=True)
    _rotate(endpoint, config=config or WebhookConfig.from_settings())
    session.flush()
    return SecretOut(
        secret=endpoint.secret, previous_secret_expires_at=endpoint.previous_secret_expires_at
    )


def _tenant_secret(session: Session, *, tenant_id: uuid.UUID, lock: bool = False) -> WebhookSecret:
    holder = repository.tenant_secret(session, tenant_id=tenant_id, lock=lock)
    if holder is None:
        repository.insert_tenant_secret(
            session, tenant_id=tenant_id, secret=signing.generate_secret()
        )
        holder = repository.tenant_secret(session, tenant_id=tenant_id, lock=lock)
    assert holder is not None
    return holder


def tenant_secret(session: Session, *, tenant: Tenant) -> SecretOut:
    """The secret signing deliveries to jobs' own ``webhook_url``, created on first use."""
    holder = _tenant_secret(session, tenant_id=tenant.id)
    return SecretOut(
        secret=holder.secret, previous_secret_expires_at=holder.previous_secret_expires_at
    )


def rotate_tenant_secret(
    session: Session, *, tenant: Tenant, config: WebhookConfig | None = None
) -> SecretOut:
    holder = _tenant_secret(session, tenant_id=tenant.id, lock=True)
    _rotate(holder, config=config or WebhookConfig.from_settings())
    session.flush()
    return SecretOut(
        secret=holder.secret, previous_secret_expires_at=holder.previous_secret_expires_at
    )


def _signing_secrets(holder: WebhookEndpoint | WebhookSecret, *, now: datetime) -> list[str]:
    secrets_ = [holder.secret]
    expires = holder.previous_secret_expires_at
    if holder.previous_secret and expires is not None and expires > now:
        secrets_.append(holder.previous_secret)
    return secrets_


# Events -----------------------------------------------------------------------------------------


def _body(event: str, data: dict[str, Any], *, now: datetime) -> str:
    payload = {"type": event, "timestamp": now.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _money(value: Any) -> str | None:
    return None if value is None else str(value)


def job_data(job: Job, *, config: WebhookConfig) -> dict[str, Any]:
    """A job's webhook payload; a result over the inline limit is left to its URL."""
    result = job.result
    omitted = result is not None and len(result.encode()) > config.max_inline_result_bytes
    tokens = (
        job.input_tokens + job.output_tokens
        if job.input_tokens is not None and job.output_tokens is not None
        else None
    )
    return {
        "id": str(job.id),
        "group_id": str(job.group_id) if job.group_id else None,
        "state": job.state.value,
        "result": None if omitted else result,
        "result_omitted": omitted,
        "error": job.error,
        "model": job.model,
        "cache_hit": job.cache_hit,
        "usage": {
            "input_tokens": job.input_tokens,
            "output_tokens": job.output_tokens,
            "total_tokens": tokens,
        },
        "cost": {"cost_usd": _money(job.cost_usd), "naive_cost_usd": _money(job.naive_cost_usd)},
        "metadata": job.job_metadata,
        "idempotency_key": job.idempotency_key,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "url": f"{config.public_base_url}/v1/jobs/{job.id}",
    }


def _delivery_row(
    *,
    tenant_id: uuid.UUID,
    event: str,
    subject: uuid.UUID,
    url: str,
    body: str,
    endpoint_id: uuid.UUID | None,
    job_id: uuid.UUID | None,
    group_id: uuid.UUID | None,
    now: datetime,
    first_delay: float,
) -> dict[str, Any]:
    receiver = str(endpoint_id) if endpoint_id else "job-url"
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "endpoint_id": endpoint_id,
        "job_id": job_id,
        "group_id": group_id,
        "event": event,
        "dedup_key": f"{event}:{subject}:{receiver}",
        "message_id": "msg_" + uuid.uuid4().hex,
        "url": url,
        "body": body,
        "state": DeliveryState.pending,
        "attempt_count": 0,
        "next_attempt_at": now + timedelta(seconds=first_delay),
        "enqueued_at": None,
        "created_at": now,
        "updated_at": now,
    }


def on_jobs_finished(
    session: Session, *, job_ids: list[uuid.UUID], config: WebhookConfig | None = None
) -> list[uuid.UUID]:
    """Record the webhook deliveries owed for jobs that just ended; returns the new ids.

    Call it in the transaction that ends the jobs. ``job.completed`` / ``job.failed`` go to
    the job's own ``webhook_url`` and to the tenant's subscribed endpoints;
    ``group.completed`` goes to subscribed endpoints once every job of the group has ended.
    Safe to call twice: a delivery already recorded for an event and receiver is not
    recorded again.
    """
    if not job_ids or not repository.anyone_listening(session, job_ids=job_ids):
        return []
    config = config or WebhookConfig.from_settings()
    jobs = repository.finished_jobs(session, ids=job_ids)
    if not jobs:
        return []
    tenant_ids = sorted({job.tenant_id for job in jobs})
    endpoints: dict[uuid.UUID, list[WebhookEndpoint]] = {}
    for endpoint in repository.enabled_endpoints(session, tenant_ids=tenant_ids):
        endpoints.setdefault(endpoint.tenant_id, []).append(endpoint)
    if not endpoints and not any(job.webhook_url for job in jobs):
        return []

    now = utcnow()
    first_delay = config.retry_schedule[0]
    rows: list[dict[str, Any]] = []
    for tenant_id in {job.tenant_id for job in jobs if job.webhook_url}:
        _tenant_secret(session, tenant_id=tenant_id)
    for job in jobs:
        event = JOB_EVENTS.get(job.state)
        if event is None:
            continue  # cancelled: no event, but its group may now be complete
        body = _body(event, job_data(job, config=config), now=now)
        receivers: list[tuple[uuid.UUID | None, str]] = [
            (e.id, e.url) for e in endpoints.get(job.tenant_id, []) if event in e.events
        ]
        if job.webhook_url:
            receivers.append((None, job.webhook_url))
        for endpoint_id, url in receivers:
            rows.append(
                _delivery_row(
                    tenant_id=job.tenant_id,
                    event=event,
                    subject=job.id,
                    url=url,
                    body=body,
                    endpoint_id=endpoint_id,
                    job_id=job.id,
                    group_id=job.group_id,
                    now=now,
                    first_delay=first_delay,
                )
            )

    group_ids = sorted(
        {
            job.group_id
            for job in jobs
            if job.group_id
            and any(GROUP_COMPLETED in e.events for e in endpoints.get(job.tenant_id, []))
        }
    )
    # Locking the group serialises transactions finishing its last jobs, so one of them is
    # sure to see every job ended.
    for group in repository.lock_groups(session, ids=group_ids):
        summary = repository.group_summary(session, group_id=group.id)
        if any(JobState(state) not in TERMINAL_STATES for state in summary["counts"]):
            continue
        data = {
            "id": str(group.id),
            "size": group.size,
            **summary,
            "url": f"{config.public_base_url}/v1/groups/{group.id}",
            "results_url": f"{config.public_base_url}/v1/groups/{group.id}/results",
        }
        body = _body(GROUP_COMPLETED, data, now=now)
        for endpoint in endpoints.get(group.tenant_id, []):
            if GROUP_COMPLETED in endpoint.events:
                rows.append(
                    _delivery_row(
                        tenant_id=group.tenant_id,
                        event=GROUP_COMPLETED,
                        subject=group.id,
                        url=endpoint.url,
                        body=body,
                        endpoint_id=endpoint.id,
                        job_id=None,
                        group_id=group.id,
                        now=now,
                        first_delay=first_delay,
                    )
                )

    if first_delay == 0 and len(rows) <= DIRECT_HINTS:
        # Hint each delivery now (stamped, so the dispatcher leaves them to these hints).
        for row in rows:
            row["enqueued_at"] = now
    ids = repository.insert_deliveries(session, rows)
    if first_delay == 0 and ids:
        if len(rows) <= DIRECT_HINTS:
            for delivery_id in ids:
                queue.enqueue(session, queue.DELIVER_WEBHOOK, str(delivery_id))
        else:
            # Many at once (a whole provider batch): one wake-up for the dispatcher, which
            # hints them from the delivery queue instead of holding up this transaction.
            queue.enqueue(session, queue.DISPATCH_WEBHOOKS)
    return ids


# Attempts ---------------------------------------------------------------------------------------


def dispatch_due(
    session: Session, *, stale_after: timedelta, now: datetime | None = None
) -> list[uuid.UUID]:
    """Send a hint for every due delivery whose hint is missing or stale (beat calls this)."""
    now = now or utcnow()
    ids = repository.claim_due(
        session, now=now, stale_before=now - stale_after, limit=DISPATCH_LIMIT
    )
    for delivery_id in ids:
        queue.enqueue(session, queue.DELIVER_WEBHOOK, str(delivery_id))
    return ids


def _disable(session: Session, endpoint: WebhookEndpoint, *, reason: str) -> None:
    endpoint.disabled_at = utcnow()
    endpoint.disabled_reason = reason
    repository.kill_pending(session, endpoint_id=endpoint.id, reason=f"endpoint disabled: {reason}")


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
        return delivery.state

    number = repository.last_attempt_number(session, delivery_id=delivery.id) + 1
    delivery.attempt_count += 1
    address: str | None = None
    try:
        target = addresses.check(delivery.url, config.policy)
    except addresses.RefusedURL as exc:
        outcome = sender.Outcome(status_code=None, error=f"refused: {exc}", duration_ms=0)
    else:
        holder = endpoint or _tenant_secret(session, tenant_id=delivery.tenant_id)
        timestamp = int(time.time())
        headers = {
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature_header(
                _signing_secrets(holder, now=now),
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
            _disable(session, endpoint, reason="the receiver answered 410 Gone")
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
    return delivery.state


# Reading and redelivering -------------------------------------------------------------------


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _cursor(delivery: WebhookDelivery) -> str:
    # Microseconds since the epoch: exact, and safe in a query string unencoded.
    micros = (delivery.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{delivery.id}"


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        micros, _, raw_id = cursor.partition("_")
        return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(raw_id)
    except ValueError as exc:
        raise ValidationFailed(f"malformed cursor {cursor!r}") from exc


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
