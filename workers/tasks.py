"""Thin tasks: ids in, open a session, call the domain service."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from app.batching import service as batching_service
from app.catalog.catalog import get_catalog
from app.config import get_settings
from app.delivery import service as delivery_service
from app.intake import ingest as intake_ingest
from app.kit import queue
from app.kit.db import session_scope
from app.providers.base import ProviderError
from app.providers.registry import (
    realtime_concurrency,
    shared_provider,
    shared_realtime_provider,
)
from workers.celery_app import celery_app

log = logging.getLogger(__name__)


@celery_app.task(name=queue.INGEST)
def ingest(job_ids: list[str]) -> int:
    with session_scope() as session:
        return intake_ingest.ingest(
            session, job_ids=[uuid.UUID(i) for i in job_ids], catalog=get_catalog()
        )


@celery_app.task(name=queue.COLLECT)
def collect() -> int:
    # One batch per transaction: each batch's submission is sent as soon as it is claimed,
    # while the next one is being claimed.
    flushed = 0
    while True:
        with session_scope() as session:
            created = batching_service.collect(session, catalog=get_catalog(), max_batches=1)
        if not created:
            return flushed
        flushed += len(created)


@celery_app.task(
    name=queue.SUBMIT_BATCH, autoretry_for=(Exception,), retry_backoff=True, max_retries=5
)
def submit_batch(batch_id: str) -> bool:
    catalog = get_catalog()
    batch_uuid = uuid.UUID(batch_id)
    with session_scope() as session:
        route = batching_service.route_of(session, batch_id=batch_uuid)
        if route is None:
            return False
        provider_name, mode = route
        if mode == batching_service.REALTIME:
            return batching_service.run_realtime(
                session,
                batch_id=batch_uuid,
                provider=shared_realtime_provider(catalog, provider_name),
                concurrency=realtime_concurrency(catalog, provider_name),
                catalog=catalog,
            )
    # Committed before the provider is called: a later attempt knows this one may have
    # reached the provider.
    with session_scope() as session:
        attempt = batching_service.record_attempt(session, batch_id=batch_uuid)
    if attempt is None:
        return False
    with session_scope() as session:
        return batching_service.submit(
            session,
            batch_id=batch_uuid,
            provider=shared_provider(catalog, provider_name),
            attempt=attempt,
        )


@celery_app.task(name=queue.POLL_BATCHES)
def poll_batches() -> int:
    with session_scope() as session:
        return len(batching_service.dispatch_polls(session))


@celery_app.task(name=queue.POLL_BATCH)
def poll_batch(batch_id: str) -> str | None:
    catalog = get_catalog()
    settings = get_settings()
    backoff = (settings.poll_interval_seconds, settings.poll_backoff_max_seconds)
    batch_uuid = uuid.UUID(batch_id)
    with session_scope() as session:
        provider_name = batching_service.provider_of(session, batch_id=batch_uuid)
        if provider_name is None:
            return None
        try:
            state = batching_service.poll(
                session,
                batch_id=batch_uuid,
                provider=shared_provider(catalog, provider_name),
                catalog=catalog,
                backoff=backoff,
            )
        except ProviderError:
            # The batch keeps its lease; it is polled again once that runs out.
            log.warning("polling batch %s failed", batch_id, exc_info=True)
            return None
    return state.value if state is not None else None


@celery_app.task(name=queue.SWEEP)
def sweep() -> dict[str, int]:
    stale_after = timedelta(seconds=get_settings().stale_after_seconds)
    with session_scope() as session:
        return batching_service.sweep(session, stale_after=stale_after, catalog=get_catalog())


@celery_app.task(name=queue.DISPATCH_WEBHOOKS)
def dispatch_webhooks() -> int:
    stale_after = timedelta(seconds=get_settings().stale_after_seconds)
    with session_scope() as session:
        return len(delivery_service.dispatch_due(session, stale_after=stale_after))


@celery_app.task(name=queue.DELIVER_WEBHOOK)
def deliver_webhook(delivery_id: str) -> str | None:
    config = delivery_service.WebhookConfig.from_settings()
    with session_scope() as session:
        state = delivery_service.deliver(session, delivery_id=uuid.UUID(delivery_id), config=config)
        return state.value if state is not None else None
