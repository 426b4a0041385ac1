"""The collector, submitter, poller and sweeper: windows of waiting jobs become provider batches.

Every step re-reads state from Postgres and acts only on rows still in the state it expects,
so each one is safe to run twice, concurrently, or after a crash.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.accounting import service as accounting_service
from app.batching import repository
from app.cache import service as cache_service
from app.jobs.prompts import build_messages
from app.kit import queue
from app.models import BatchState, JobState, ProviderBatch, utcnow
from app.providers.base import (
    BatchProvider,
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderError,
)
from app.routing.catalog import Catalog

log = logging.getLogger(__name__)


def collect(session: Session, *, catalog: Catalog, now: datetime | None = None) -> list[uuid.UUID]:
    """Flush every window that is full or whose oldest job has waited ``max_wait_seconds``.

    A full window flushes in batches of ``max_size``; the remainder waits unless it is due.
    Returns the new batch ids; their submission is enqueued after commit.
    """
    now = now or utcnow()
    created: list[uuid.UUID] = []
    for window in repository.open_windows(session):
        model = catalog.model(window.model)
        due = window.oldest <= now - timedelta(seconds=model.max_wait_seconds)
        remaining = window.size
        while remaining >= model.max_size or (due and remaining > 0):
            batch = repository.claim(
                session,
                provider=window.provider,
                model=window.model,
                mode=window.mode,
                limit=model.max_size,
            )
            if batch is None:  # another collector holds the rest
                break
            created.append(batch.id)
            remaining -= batch.request_count
            queue.enqueue(session, queue.SUBMIT_BATCH, str(batch.id))
            log.info(
                "flushed %d jobs for %s into batch %s", batch.request_count, window.model, batch.id
            )
    return created


def submit(session: Session, *, batch_id: uuid.UUID, provider: BatchProvider) -> bool:
    """Send a pending batch to its provider. Returns False when there was nothing to do.

    The batch row is locked for the duration, so only one worker submits it. A batch the
    provider already holds (a crash after the provider accepted it) is adopted, not resent.
    """
    batch = repository.lock_batch(session, batch_id=batch_id, state=BatchState.pending)
    if batch is None:
        return False
    jobs = repository.batch_jobs(session, batch_id=batch.id, state=JobState.batched)
    if not jobs:
        batch.state, batch.error = BatchState.failed, "no jobs left to submit"
        return True
    now = utcnow()
    try:
        handle = provider.find_batch(reference=str(batch.id))
        if handle is None:
            requests = [
                BatchRequest(str(job.id), build_messages(job), job.max_output_tokens)
                for job in jobs
            ]
            handle = provider.submit(reference=str(batch.id), model=batch.model, requests=requests)
    except ProviderError as exc:
        if exc.retryable:
            raise
        # The provider rejected the batch itself; resending cannot succeed.
        batch.state, batch.error = BatchState.failed, str(exc)
        repository.set_jobs_state(
            session,
            batch_id=batch.id,
            from_state=JobState.batched,
            values={"state": JobState.failed, "error": f"provider refused the batch: {exc}",
                    "completed_at": now},
        )  # fmt: skip
        return True
    batch.external_id = handle.external_id
    batch.input_file_id = handle.input_file_id
    batch.provider_status = handle.status
    batch.state = BatchState.submitted
    batch.submitted_at = now
    batch.request_count = len(jobs)
    repository.set_jobs_state(
        session,
        batch_id=batch.id,
        from_state=JobState.batched,
        values={"state": JobState.submitted, "submitted_at": now},
    )
    return True


def provider_of(session: Session, *, batch_id: uuid.UUID) -> str | None:
    """The provider a batch goes to, or None for an unknown batch."""
    return repository.provider_of(session, batch_id=batch_id)


def open_batches(session: Session) -> list[uuid.UUID]:
    """Batches the provider holds that have not ended yet."""
    return repository.batch_ids_in_state(session, state=BatchState.submitted)


def poll(
    session: Session, *, batch_id: uuid.UUID, provider: BatchProvider, catalog: Catalog
) -> BatchState | None:
    """Check one submitted batch; once the provider has ended it, store every result."""
    batch = repository.lock_batch(session, batch_id=batch_id, state=BatchState.submitted)
    if batch is None or batch.external_id is None:
        return None
    status = provider.retrieve(batch.external_id)
    batch.provider_status = status.status
    if not status.ended:
        return batch.state
    results = (
        provider.results(status) if status.status in {"completed", "cancelled", "expired"} else []
    )
    _apply(session, batch=batch, results=results, status=status, catalog=catalog)
    batch.state = BatchState.completed if status.status == "completed" else BatchState.failed
    batch.error = status.error
    batch.output_file_id = status.output_file_id
    batch.error_file_id = status.error_file_id
    batch.completed_at = utcnow()
    return batch.state


def _apply(
    session: Session,
    *,
    batch: ProviderBatch,
    results: list[BatchResult],
    status: BatchStatus,
    catalog: Catalog,
) -> None:
    model = catalog.model(batch.model)
    jobs = {
        str(job.id): job
        for job in repository.batch_jobs(session, batch_id=batch.id, state=JobState.submitted)
    }
    now = utcnow()
    rows = []
    writes = []
    seen: set[str] = set()
    for result in results:
        job = jobs.get(result.custom_id)
        if job is None or result.custom_id in seen:
            continue  # not ours, already applied, or cancelled meanwhile
        seen.add(result.custom_id)
        ok = result.error is None and result.content is not None
        rows.append(
            {
                "job_id": job.id,
                "new_state": JobState.completed if ok else JobState.failed,
                "result": result.content,
                "error": None if ok else f"provider error: {result.error}",
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "cost_usd": accounting_service.batch_price(
                    model, input_tokens=result.input_tokens, output_tokens=result.output_tokens
                ),
                "naive_cost_usd": accounting_service.naive_price(
                    catalog, input_tokens=result.input_tokens, output_tokens=result.output_tokens
                ),
                "completed_at": now,
            }
        )
        if ok and job.cache_key and result.content is not None:
            writes.append(
                cache_service.CacheWrite(
                    tenant_id=job.tenant_id,
                    cache_key=job.cache_key,
                    model=batch.model,
                    result=result.content,
                    source_job_id=job.id,
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                )
            )
    reason = status.error or f"provider batch ended {status.status} without a result for this job"
    for custom_id, job in jobs.items():
        if custom_id not in seen:
            rows.append(
                {
                    "job_id": job.id,
                    "new_state": JobState.failed,
                    "result": None,
                    "error": reason,
                    "input_tokens": None,
                    "output_tokens": None,
                    "cost_usd": None,
                    "naive_cost_usd": None,
                    "completed_at": now,
                }
            )
    repository.apply_results(session, rows)
    cache_service.store_many(session, writes)


def sweep(
    session: Session, *, stale_after: timedelta, now: datetime | None = None
) -> dict[str, int]:
    """Re-drive work whose wake-up message was lost: queued jobs and pending batches.

    Enqueues hints only; the tasks they wake check state again under row locks.
    """
    before = (now or utcnow()) - stale_after
    queued = repository.stale_jobs(session, state=JobState.queued, before=before, limit=50_000)
    for start in range(0, len(queued), 500):
        queue.enqueue(session, queue.INGEST, [str(i) for i in queued[start : start + 500]])
    pending = repository.stale_batches(session, state=BatchState.pending, before=before)
    for batch_id in pending:
        queue.enqueue(session, queue.SUBMIT_BATCH, str(batch_id))
    return {"queued_jobs": len(queued), "pending_batches": len(pending)}
