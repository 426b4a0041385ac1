"""The collector, submitter, poller and sweeper: windows of waiting jobs become provider batches.

Every step re-reads state from Postgres and acts only on rows still in the state it expects,
so each one is safe to run twice, concurrently, or after a crash.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.orm import Session

from app.accounting import service as accounting_service
from app.batching import repository
from app.cache import service as cache_service
from app.catalog.catalog import Catalog, get_catalog
from app.jobs import events as job_events
from app.kit import queue
from app.kit.prompts import Request, build_messages
from app.models import BatchState, Job, JobMode, JobState, ProviderBatch, utcnow
from app.providers.base import (
    BatchProvider,
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderError,
    ProviderLimits,
    RealtimeProvider,
    split_requests,
)
from app.providers.registry import batch_limits

log = logging.getLogger(__name__)

REALTIME = "realtime"
# What one request line adds besides its messages: custom_id, method, url, model, max_tokens.
LINE_OVERHEAD_BYTES = 400
# A window with no byte or token cap of its own.
UNBOUNDED = 2**62
# Per-line codes that a later batch may not repeat; ``batch_cancelled`` is someone's decision.
NOT_RETRIED = frozenset({"batch_cancelled"})


@dataclass(frozen=True)
class WindowSettings:
    max_size: int
    max_tokens: int
    max_bytes: int
    max_wait_seconds: float


def estimate_bytes(job: Request) -> int:
    """An upper bound of the bytes ``job``'s request adds to a batch file."""
    return len(orjson.dumps(build_messages(job))) + LINE_OVERHEAD_BYTES


def window_settings(
    catalog: Catalog, *, model: str, mode: str, limits: ProviderLimits | None
) -> WindowSettings:
    """A window's flush thresholds: the model's settings, capped by the provider's limits."""
    config = catalog.model(model)
    if mode == REALTIME:
        return WindowSettings(
            config.realtime_max_size, UNBOUNDED, UNBOUNDED, config.realtime_max_wait_seconds
        )
    max_size, max_bytes = config.max_size, config.max_bytes or UNBOUNDED
    if limits is not None:
        max_size = min(max_size, limits.max_requests)
        max_bytes = min(max_bytes, limits.max_bytes)
    return WindowSettings(max_size, config.max_tokens, max_bytes, config.max_wait_seconds)


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
    for window in repository.open_windows(session):
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
            claimed = repository.claim(
                session,
                provider=window.provider,
                model=window.model,
                mode=window.mode,
                max_size=settings.max_size,
                max_tokens=settings.max_tokens,
                max_bytes=settings.max_bytes,
            )
            if claimed is None:  # another collector holds the rest
                break
            created.append(claimed.batch.id)
            size -= claimed.count
            tokens -= claimed.tokens
            nbytes -= claimed.bytes
            queue.enqueue(session, queue.SUBMIT_BATCH, str(claimed.batch.id))
            log.info(
                "flushed %d jobs for %s (%s) into batch %s",
                claimed.count,
                window.model,
                window.mode,
                claimed.batch.id,
            )
    return created


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
    windows: dict[tuple[str, str, str], list[int]] = {}
    for index, job in enumerate(arrivals):
        windows.setdefault((job.provider, job.model, job.mode), []).append(index)
    for (provider, model, mode), indices in windows.items():
        settings = window_settings(catalog, model=model, mode=mode, limits=limits.get(provider))
        if not _fills([arrivals[i] for i in indices], settings) or repository.has_waiting(
            session, provider=provider, model=model, mode=mode
        ):
            continue
        # Highest priority first; within a priority, the order they were sent in.
        indices.sort(key=lambda i: -arrivals[i].priority)
        while indices and _fills([arrivals[i] for i in indices], settings):
            head = [arrivals[i] for i in indices[: settings.max_size]]
            taken, _, _ = repository.fitting_prefix(
                [(job.estimated_tokens, job.estimated_bytes) for job in head],
                max_tokens=settings.max_tokens,
                max_bytes=settings.max_bytes,
            )
            batch_id = repository.add_batch(
                session, provider=provider, model=model, mode=mode, size=taken
            )
            for i in indices[:taken]:
                placed[i] = batch_id
            indices = indices[taken:]
            queue.enqueue(session, queue.SUBMIT_BATCH, str(batch_id))
    return placed


def _requests(jobs: list[repository.BatchJob]) -> list[BatchRequest]:
    return [
        BatchRequest(str(job.id), build_messages(job), job.max_output_tokens, job.temperature)
        for job in jobs
    ]


def record_attempt(session: Session, *, batch_id: uuid.UUID) -> int | None:
    """Count a submission attempt of a pending batch (commit it before ``submit``); returns
    which attempt this is, or None when the batch is no longer pending."""
    return repository.record_attempt(session, batch_id=batch_id)


def submit(
    session: Session, *, batch_id: uuid.UUID, provider: BatchProvider, attempt: int | None = None
) -> bool:
    """Send a pending batch to its provider. Returns False when there was nothing to do.

    The batch row is locked for the duration, so only one worker submits it. A batch the
    provider may already hold (a worker killed after the provider accepted it) is looked up
    and adopted, not resent; only the first recorded ``attempt`` can skip that lookup, since
    no earlier one can have reached the provider. Jobs that do not fit the provider's limits
    go back to their window.
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
        handle = None if attempt == 1 else provider.find_batch(reference=str(batch.id))
        if handle is None:
            chunks = split_requests(provider, model=batch.model, requests=_requests(jobs))
            if len(chunks) > 1:
                # The estimates let too much in: send what fits, the rest waits for a later batch.
                overflow = {r.custom_id for chunk in chunks[1:] for r in chunk}
                repository.release(session, job_ids=[uuid.UUID(i) for i in overflow])
                jobs = [job for job in jobs if str(job.id) not in overflow]
                queue.enqueue(session, queue.COLLECT)
            handle = provider.submit(reference=str(batch.id), model=batch.model, requests=chunks[0])
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
        job_events.jobs_finished(session, job_ids=[job.id for job in jobs])
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


def run_realtime(
    session: Session,
    *,
    batch_id: uuid.UUID,
    provider: RealtimeProvider,
    concurrency: int,
    catalog: Catalog,
) -> bool:
    """Send a pending realtime micro-batch as concurrent calls and store every outcome.

    Runs in one transaction under the batch's lock: a worker killed mid-way leaves the batch
    pending (nothing applied), and the sweeper sends it again.
    """
    batch = repository.lock_batch(session, batch_id=batch_id, state=BatchState.pending)
    if batch is None:
        return False
    jobs = repository.batch_jobs(session, batch_id=batch.id, state=JobState.batched)
    if not jobs:
        batch.state, batch.error = BatchState.failed, "no jobs left to submit"
        return True
    now = utcnow()
    repository.set_jobs_state(
        session,
        batch_id=batch.id,
        from_state=JobState.batched,
        values={"state": JobState.submitted, "submitted_at": now},
    )
    results = provider.complete_many(
        model=batch.model, requests=_requests(jobs), concurrency=concurrency
    )
    status = BatchStatus(REALTIME, "completed", True, None, None, None)
    _apply(session, batch=batch, results=results, status=status, catalog=catalog)
    batch.state, batch.provider_status = BatchState.completed, "completed"
    batch.submitted_at = batch.completed_at = now
    batch.request_count = len(jobs)
    return True


def route_of(session: Session, *, batch_id: uuid.UUID) -> tuple[str, str] | None:
    """(provider, mode) of a batch, or None for an unknown batch."""
    return repository.route_of(session, batch_id=batch_id)


def provider_of(session: Session, *, batch_id: uuid.UUID) -> str | None:
    """The provider a batch goes to, or None for an unknown batch."""
    route = repository.route_of(session, batch_id=batch_id)
    return route[0] if route else None


def open_batches(session: Session, *, now: datetime | None = None) -> list[uuid.UUID]:
    """Batches the provider holds that have not ended and whose backoff has passed."""
    return repository.batches_due_for_poll(session, now=now or utcnow())


# How long a batch handed to a poll task is not handed out again; a lost message costs this.
POLL_LEASE = timedelta(seconds=60)


def dispatch_polls(
    session: Session, *, now: datetime | None = None, lease: timedelta = POLL_LEASE
) -> list[uuid.UUID]:
    """Hand every batch due for a poll to its own task (sent after commit), so batches are
    polled in parallel across workers. Returns their ids."""
    now = now or utcnow()
    batch_ids = repository.lease_due_polls(session, now=now, until=now + lease)
    for batch_id in batch_ids:
        queue.enqueue(session, queue.POLL_BATCH, str(batch_id))
    return batch_ids


def poll_delay(polls: int, *, base: float, cap: float) -> timedelta:
    """Exponential backoff between polls of one batch: base, 2·base, 4·base ... up to cap."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, min(polls - 1, 30))))


def poll(
    session: Session,
    *,
    batch_id: uuid.UUID,
    provider: BatchProvider,
    catalog: Catalog,
    backoff: tuple[float, float] = (2.0, 60.0),
) -> BatchState | None:
    """Check one submitted batch; once the provider has ended it, store every result.

    Between polls the batch backs off (``backoff`` = (first delay, longest delay)), also
    after a failed call. A batch whose every job was cancelled is cancelled at the provider.
    """
    batch = repository.lock_batch(session, batch_id=batch_id, state=BatchState.submitted)
    if batch is None or batch.external_id is None:
        return None
    now = utcnow()
    batch.polls += 1
    batch.next_poll_at = now + poll_delay(batch.polls, base=backoff[0], cap=backoff[1])
    try:
        status = provider.retrieve(batch.external_id)
        if (
            not status.ended
            and batch.cancel_requested_at is None
            and not repository.has_jobs(session, batch_id=batch.id, state=JobState.submitted)
        ):
            status = provider.cancel(batch.external_id)
            batch.cancel_requested_at = now
            log.info("every job of batch %s was cancelled; cancelled it at the provider", batch.id)
    except ProviderError as exc:
        if exc.status_code != 404:
            log.warning("polling batch %s failed; backing off: %s", batch.id, exc)
            return batch.state
        # The provider no longer knows the batch: its jobs go to a later batch.
        status = BatchStatus(batch.external_id, "failed", True, None, None, f"lost: {exc}")
        _apply(session, batch=batch, results=[], status=status, catalog=catalog, retry_all=True)
        batch.state, batch.error, batch.completed_at = BatchState.failed, status.error, now
        return batch.state
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


def _retry_row(
    job: Job | repository.Member, *, catalog: Catalog, reason: str, code: str | None
) -> dict[str, Any] | None:
    """The requeue row for a retryable failure, or None once the job used its attempts."""
    model = catalog.model(job.model or "")
    attempts = job.attempts + 1
    if attempts >= model.max_attempts:
        return None
    mode = job.mode
    if code == "batch_expired" and model.on_expiry == "realtime":
        mode = REALTIME
    return {"job_id": job.id, "attempts": attempts, "new_mode": mode, "error": reason}


def _failed_row(job: repository.Member, *, reason: str, now: datetime) -> dict[str, Any]:
    return {
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


def _apply(
    session: Session,
    *,
    batch: ProviderBatch,
    results: list[BatchResult],
    status: BatchStatus,
    catalog: Catalog,
    retry_all: bool = False,
) -> None:
    """Apply results by ``custom_id`` onto the batch's jobs still ``submitted``.

    Retryable failures (expired, rate-limited, 5xx) go back to a window until the model's
    ``max_attempts``; other failures, and the last attempt, fail with the provider's reason.
    """
    model = catalog.model(batch.model)
    # Realtime calls pay list price; batch calls get the model's batch discount.
    price = (
        accounting_service.list_price if batch.mode == REALTIME else accounting_service.batch_price
    )
    jobs = {
        str(job.id): job
        for job in repository.batch_members(session, batch_id=batch.id, state=JobState.submitted)
    }
    now = utcnow()
    rows: list[dict[str, Any]] = []
    retries: list[dict[str, Any]] = []
    writes = []
    seen: set[str] = set()
    for result in results:
        job = jobs.get(result.custom_id)
        if job is None or result.custom_id in seen:
            continue  # not ours, already applied, or cancelled meanwhile
        seen.add(result.custom_id)
        ok = result.error is None and result.content is not None
        if not ok:
            reason = f"provider error: {result.error}"
            retry = None
            if result.retryable and result.error_code not in NOT_RETRIED:
                retry = _retry_row(job, catalog=catalog, reason=reason, code=result.error_code)
            if retry is not None:
                retries.append(retry)
            else:
                rows.append(_failed_row(job, reason=reason, now=now))
            continue
        rows.append(
            {
                "job_id": job.id,
                "new_state": JobState.completed,
                "result": result.content,
                "error": None,
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "cost_usd": price(
                    model, input_tokens=result.input_tokens, output_tokens=result.output_tokens
                ),
                "naive_cost_usd": accounting_service.naive_price(
                    catalog, input_tokens=result.input_tokens, output_tokens=result.output_tokens
                ),
                "completed_at": now,
            }
        )
        if job.cache_key and result.content is not None:
            writes.append(
                cache_service.CacheWrite(
                    tenant_id=job.tenant_id,
                    cache_key=job.cache_key,
                    model=batch.model,
                    result=result.content,
                    source_job_id=job.id,
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                    cache_mode=job.cache_mode,
                    prompt=job.prompt,
                    document=job.document,
                )
            )
    reason = status.error or f"provider batch ended {status.status} without a result for this job"
    # A batch that expired (or completed yet left a request out) did not try every request.
    retryable = retry_all or status.status in {"expired", "completed"}
    code = "batch_expired" if status.status == "expired" else None
    for custom_id, job in jobs.items():
        if custom_id in seen:
            continue
        retry = _retry_row(job, catalog=catalog, reason=reason, code=code) if retryable else None
        if retry is not None:
            retries.append(retry)
        else:
            rows.append(_failed_row(job, reason=reason, now=now))
    repository.apply_results(session, rows, from_state=JobState.submitted)
    repository.requeue(session, retries, from_state=JobState.submitted)
    cache_service.store_many(session, writes)
    if retries:
        queue.enqueue(session, queue.COLLECT)
    job_events.jobs_finished(session, job_ids=[row["job_id"] for row in rows])


def sweep(
    session: Session,
    *,
    stale_after: timedelta,
    catalog: Catalog | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Re-drive work stuck in any non-terminal state for longer than ``stale_after``.

    queued → ingest again; waiting → collect; batched in a batch that is no longer pending →
    back to the window; pending batch → submit again; submitted in a batch that ended without
    an outcome for it → retried or failed; submitted batch not polled → poll. Enqueues hints
    (or repairs rows) only; the tasks they wake check state again under row locks.
    """
    now = now or utcnow()
    before = now - stale_after
    queued = repository.stale_jobs(session, state=JobState.queued, before=before, limit=50_000)
    for start in range(0, len(queued), 500):
        queue.enqueue(session, queue.INGEST, [str(i) for i in queued[start : start + 500]])
    waiting = repository.stale_jobs(session, state=JobState.waiting, before=before, limit=1)
    orphans = repository.release_orphans(session, before=before)
    if waiting or orphans:
        queue.enqueue(session, queue.COLLECT)
    pending = repository.stale_batches(session, state=BatchState.pending, before=before)
    for batch_id in pending:
        queue.enqueue(session, queue.SUBMIT_BATCH, str(batch_id))
    stranded = repository.stranded_submitted(session, before=before, limit=10_000)
    if stranded:
        _settle_stranded(session, jobs=stranded, catalog=catalog or get_catalog(), now=now)
    unpolled = repository.stale_batches(session, state=BatchState.submitted, before=before)
    if unpolled:
        queue.enqueue(session, queue.POLL_BATCHES)
    return {
        "queued_jobs": len(queued),
        "waiting_jobs": len(waiting),
        "orphaned_jobs": len(orphans),
        "pending_batches": len(pending),
        "stranded_jobs": len(stranded),
        "unpolled_batches": len(unpolled),
    }


def _settle_stranded(session: Session, *, jobs: list[Job], catalog: Catalog, now: datetime) -> None:
    reason = "the provider batch ended without an outcome for this job"
    failed: list[uuid.UUID] = []
    for job in jobs:
        retry = _retry_row(job, catalog=catalog, reason=reason, code=None)
        if retry is None:
            job.state, job.error, job.completed_at = JobState.failed, reason, now
            failed.append(job.id)
        else:
            job.state, job.provider_batch_id = JobState.waiting, None
            job.attempts, job.mode, job.error = retry["attempts"], retry["new_mode"], reason
    session.flush()
    queue.enqueue(session, queue.COLLECT)
    job_events.jobs_finished(session, job_ids=failed)
