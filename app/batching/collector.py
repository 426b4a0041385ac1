"""The collector: windows of waiting jobs that are full or due become pending provider batches,
whose submission is enqueued after commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.batching import fallbacks, repository
from app.batching.fairness import fair_quotas, interleave
from app.batching.windows import WindowSettings, fitting_prefix, window_settings
from app.catalog.catalog import Catalog, ModelConfig
from app.jobs import repository as job_repository
from app.jobs import transitions
from app.kit import queue
from app.kit.db import session_scope
from app.models import JobMode, utcnow
from app.providers import breaker
from app.providers.base import ProviderLimits
from app.providers.registry import batch_limits
from app.tenants import service as tenant_service

log = logging.getLogger(__name__)

# Jobs per ingest hint.
INGEST_CHUNK = 500


@dataclass(frozen=True)
class Claimed:
    batch_id: uuid.UUID
    count: int
    tokens: int
    bytes: int


def flush_windows(*, catalog: Catalog) -> int:
    """Run ``collect`` one batch per transaction until no window is due (what the ``collect``
    task runs); returns how many batches it flushed.

    Each batch's submission is sent at its commit, while the next one is being claimed.
    """
    flushed = 0
    while True:
        with session_scope() as session:
            created = collect(session, catalog=catalog, max_batches=1)
        if not created:
            return flushed
        flushed += len(created)


def collect(
    session: Session,
    *,
    catalog: Catalog,
    limits: Mapping[str, ProviderLimits] | None = None,
    now: datetime | None = None,
    max_batches: int | None = None,
) -> list[uuid.UUID]:
    """Flush every window that is full (size, estimated tokens or bytes) or whose oldest job
    has waited ``max_wait_seconds``, whichever comes first.

    A full window flushes in batches that each fit the thresholds; the remainder waits unless
    it is due. Stops after ``max_batches`` new batches, if given. Returns the new batch ids;
    their submission is enqueued after commit.
    """
    now = now or utcnow()
    if limits is None:
        limits = batch_limits(catalog)
    created: list[uuid.UUID] = []
    open_providers = breaker.open_providers(catalog)
    for window in job_repository.open_windows(session):
        if not catalog.has_model(window.model) or window.provider not in catalog.providers:
            reroute_window(session, window=window)
            continue
        if window.provider in open_providers and fallbacks.leave_open_circuit(
            session, window=window, catalog=catalog, open_providers=open_providers, now=now
        ):
            queue.enqueue(session, queue.COLLECT)  # their new windows, at the next collect
            continue
        settings = window_settings(
            catalog, model=window.model, mode=window.mode, limits=limits.get(window.provider)
        )
        due = window.oldest <= now - timedelta(seconds=settings.max_wait_seconds)
        size, tokens, nbytes = window.size, window.tokens, window.bytes
        while (
            (max_batches is None or len(created) < max_batches)
            and size > 0
            and (
                due
                or size >= settings.max_size
                or tokens >= settings.max_tokens
                or nbytes >= settings.max_bytes
            )
        ):
            claimed = claim(
                session,
                provider=window.provider,
                model=window.model,
                mode=window.mode,
                settings=settings,
                prices=catalog.model(window.model),
            )
            if claimed is None:  # another collector holds the rest
                break
            created.append(claimed.batch_id)
            size -= claimed.count
            tokens -= claimed.tokens
            nbytes -= claimed.bytes
            queue.enqueue(session, queue.SUBMIT_BATCH, str(claimed.batch_id))
            log.info(
                "flushed %d jobs for %s (%s) into batch %s",
                claimed.count,
                window.model,
                window.mode,
                claimed.batch_id,
            )
    return created


def reroute_window(session: Session, *, window: job_repository.Window) -> list[uuid.UUID]:
    """The waiting jobs of a model (or provider) that left the catalog go back to ingest to be
    routed again, or failed there with the reason; other windows are not held up."""
    ids = transitions.unroute(
        session, provider=window.provider, model=window.model, mode=window.mode
    )
    enqueue_ingest(session, ids)
    log.warning(
        "%s (%s) is no longer in the catalog: %d waiting jobs are routed again",
        window.model,
        window.provider,
        len(ids),
    )
    return ids


def enqueue_ingest(session: Session, job_ids: Sequence[uuid.UUID]) -> None:
    """Ingest hints for ``job_ids``, in the sweeper's chunks."""
    for start in range(0, len(job_ids), INGEST_CHUNK):
        queue.enqueue(
            session, queue.INGEST, [str(i) for i in job_ids[start : start + INGEST_CHUNK]]
        )


def _fair_rows(
    session: Session, *, provider: str, model: str, mode: JobMode, limit: int
) -> list[tuple[uuid.UUID, int | None, int | None]]:
    """Up to ``limit`` waiting jobs of a window, locked, in a weighted fair share across its
    tenants (``fairness``), highest priority first inside each tenant's share."""
    waiting = job_repository.window_tenants(session, provider=provider, model=model, mode=mode)
    if len(waiting) <= 1:
        return job_repository.lock_waiting(
            session, provider=provider, model=model, mode=mode, limit=limit
        )
    weights = tenant_service.share_weights(session, tenant_ids=list(waiting))
    quotas = fair_quotas(waiting, weights, limit)
    rows = {
        tenant_id: job_repository.lock_waiting(
            session, provider=provider, model=model, mode=mode, limit=quota, tenant_id=tenant_id
        )
        for tenant_id, quota in quotas.items()
        if quota > 0
    }
    return interleave(rows, weights)


def claim(
    session: Session,
    *,
    provider: str,
    model: str,
    mode: JobMode,
    settings: WindowSettings,
    prices: ModelConfig | None = None,
) -> Claimed | None:
    """Move waiting jobs into a new pending batch: a weighted fair share of the window's
    tenants, highest priority then oldest first inside each tenant's share.

    Takes at most ``max_size`` jobs and stops before the estimated tokens or bytes would pass
    their caps (a single job over a cap still goes, alone). The jobs are locked with
    ``SKIP LOCKED``, so concurrent collectors take disjoint rows and no job is ever in two
    batches.
    """
    rows = _fair_rows(session, provider=provider, model=model, mode=mode, limit=settings.max_size)
    count, tokens, nbytes = fitting_prefix(
        [(row[1], row[2]) for row in rows],
        max_tokens=settings.max_tokens,
        max_bytes=settings.max_bytes,
    )
    if not count:
        return None
    batch_id = repository.add_batch(
        session, provider=provider, model=model, mode=mode, size=count, prices=prices
    )
    transitions.claim_into_batch(
        session, job_ids=[row[0] for row in rows[:count]], batch_id=batch_id
    )
    return Claimed(batch_id, count, tokens, nbytes)


@dataclass(frozen=True, slots=True)
class Arrival:
    """A routed job about to be stored, as the arrival flush sees it."""

    provider: str
    model: str
    mode: JobMode
    priority: int
    estimated_tokens: int
    estimated_bytes: int


def _fills(members: Sequence[Arrival], settings: WindowSettings) -> bool:
    return (
        len(members) >= settings.max_size
        or sum(job.estimated_tokens for job in members) >= settings.max_tokens
        or sum(job.estimated_bytes for job in members) >= settings.max_bytes
    )


def flush_on_arrival(
    session: Session,
    *,
    arrivals: Sequence[Arrival],
    catalog: Catalog,
    limits: Mapping[str, ProviderLimits] | None = None,
) -> list[uuid.UUID | None]:
    """Routed jobs about to be stored that fill their window by themselves go straight into
    new pending batches; their submission is enqueued after commit.

    The claim a collector would make later is folded into the insert, so each such job is
    written once fewer. Only a window in which no job waits yet qualifies, so no job already
    waiting loses its turn. Returns, per arrival, the pending batch it goes into (store it
    ``batched`` with that ``provider_batch_id``), or None: it waits for the collector.
    """
    limits = batch_limits(catalog) if limits is None else limits
    placed: list[uuid.UUID | None] = [None] * len(arrivals)
    windows: dict[tuple[str, str, JobMode], list[int]] = {}
    for index, job in enumerate(arrivals):
        windows.setdefault((job.provider, job.model, job.mode), []).append(index)
    for (provider, model, mode), indices in windows.items():
        settings = window_settings(catalog, model=model, mode=mode, limits=limits.get(provider))
        if not _fills([arrivals[i] for i in indices], settings) or job_repository.has_waiting(
            session, provider=provider, model=model, mode=mode
        ):
            continue
        # Highest priority first; within a priority, the order they were sent in.
        indices.sort(key=lambda i: -arrivals[i].priority)
        while indices and _fills([arrivals[i] for i in indices], settings):
            head = [arrivals[i] for i in indices[: settings.max_size]]
            taken, _, _ = fitting_prefix(
                [(job.estimated_tokens, job.estimated_bytes) for job in head],
                max_tokens=settings.max_tokens,
                max_bytes=settings.max_bytes,
            )
            batch_id = repository.add_batch(
                session,
                provider=provider,
                model=model,
                mode=mode,
                size=taken,
                prices=catalog.model(model),
            )
            for i in indices[:taken]:
                placed[i] = batch_id
            indices = indices[taken:]
            queue.enqueue(session, queue.SUBMIT_BATCH, str(batch_id))
    return placed
