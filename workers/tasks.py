"""Thin tasks: ids in, open a session, call the domain service. (``collect`` and
``submit_batch`` call a domain function that runs its own transactions: one per batch
claimed, and an attempt committed before the provider is called.)"""

from __future__ import annotations

import uuid
from datetime import timedelta

from app.batching import service as batching_service
from app.catalog.catalog import get_catalog
from app.config import get_settings
from app.delivery import service as delivery_service
from app.frontdoor import batches as frontdoor_batches
from app.intake import fair_ingest as intake_fair
from app.kit import queue
from app.kit.db import session_scope
from workers.celery_app import celery_app
from workers.retry import retry

# Jobs per ingest transaction, a submission's hint (app/intake/submit.py INGEST_CHUNK): a
# larger hint (the sweeper's 500) commits in steps, so its work shows (and survives a killed
# worker) step by step instead of only after minutes of embeddings.
INGEST_STEP = 250


@celery_app.task(name=queue.INGEST)
@retry(max_retries=5)
def ingest(job_ids: list[str]) -> int:
    """A hint that ``len(job_ids)`` jobs are queued: ingest as many, the tenants' fair share of
    every queued job at that moment (not necessarily these), so no tenant's backlog is
    ingested ahead of another tenant's jobs. A step that loses its connection or a deadlock
    is rolled back and the hint retried (with backoff), not dropped: a dropped hint leaves
    its jobs to the sweeper."""
    handled = 0
    while handled < len(job_ids):
        with session_scope() as session:
            step = intake_fair.ingest_next(
                session, limit=min(INGEST_STEP, len(job_ids) - handled), catalog=get_catalog()
            )
        if not step:  # nothing left to claim: every queued job is ingested or being ingested
            break
        handled += step
    return handled


@celery_app.task(name=queue.COLLECT)
def collect() -> int:
    return batching_service.flush_windows(catalog=get_catalog())


@celery_app.task(name=queue.SUBMIT_BATCH)
@retry(max_retries=5)
def submit_batch(batch_id: str) -> bool:
    return batching_service.submit_batch(batch_id=uuid.UUID(batch_id), catalog=get_catalog())


@celery_app.task(name=queue.POLL_BATCHES)
def poll_batches() -> int:
    with session_scope() as session:
        return len(batching_service.dispatch_polls(session))


@celery_app.task(name=queue.POLL_BATCH)
@retry(max_retries=5)
def poll_batch(batch_id: str) -> str | None:
    """Poll one batch. A lost database connection is retried with backoff, not dropped: a
    dropped poll waits out its lease (``results.POLL_LEASE``). The provider's own errors are
    handled inside (the batch backs off)."""
    settings = get_settings()
    backoff = (settings.poll_interval_seconds, settings.poll_backoff_max_seconds)
    with session_scope() as session:
        state = batching_service.poll_batch(
            session, batch_id=uuid.UUID(batch_id), catalog=get_catalog(), backoff=backoff
        )
    return state.value if state is not None else None


@celery_app.task(name=queue.SWEEP)
@retry(max_retries=5)
def sweep(redrive: bool = False) -> dict[str, int]:
    """``redrive``: a worker started that may replace one that died holding messages; the
    sweep also re-drives everything at once when the broker lost its queued messages. A
    lost database connection is retried with backoff (a re-drive must not be dropped)."""
    lost = queue.broker_lost_messages()
    stale_after = timedelta(seconds=get_settings().stale_after_seconds)
    with session_scope() as session:
        found = batching_service.sweep(
            session, stale_after=stale_after, catalog=get_catalog(), redrive=redrive or lost
        )
    if lost:  # only once the hints were sent: a sweep that failed leaves it to the next
        queue.mark_broker()
    return {**found, "redrive": int(redrive or lost)}


@celery_app.task(name=queue.DISPATCH_WEBHOOKS)
def dispatch_webhooks() -> int:
    settings = get_settings()
    stale_after = timedelta(seconds=settings.stale_after_seconds)
    with session_scope() as session:
        hinted = delivery_service.dispatch_due(
            session, stale_after=stale_after, per_receiver=settings.webhook_receiver_concurrency
        )
        return len(hinted)


@celery_app.task(name=queue.DELIVER_WEBHOOK)
def deliver_webhook(delivery_id: str) -> str | None:
    config = delivery_service.WebhookConfig.from_settings()
    with session_scope() as session:
        state = delivery_service.deliver(session, delivery_id=uuid.UUID(delivery_id), config=config)
        return state.value if state is not None else None


@celery_app.task(name=queue.START_OPENAI_BATCH)
@retry(max_retries=5)
def start_openai_batch(batch_id: str) -> None:
    with session_scope() as session:
        frontdoor_batches.start(session, batch_id=uuid.UUID(batch_id), catalog=get_catalog())
