"""The poller: submitted batches are polled with backoff, and once the provider has ended one,
every result is stored; retryable failures go back to a window, the rest end the job."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from app.batching import fallbacks, repository
from app.cache import service as cache_service
from app.catalog.catalog import Catalog, ModelConfig
from app.jobs import escalation as job_escalation
from app.jobs import repository as job_repository
from app.jobs import transitions
from app.jobs.transitions import JobOutcome, Retry
from app.kit import queue
from app.ledger import service as ledger_service
from app.models import BatchState, JobMode, JobState, ProviderBatch, utcnow
from app.providers.base import BatchProvider, BatchResult, BatchStatus, ProviderError
from app.providers.registry import shared_provider
from app.tenants import service as tenant_service

log = logging.getLogger(__name__)

# Per-line codes that a later batch may not repeat; ``batch_cancelled`` is someone's decision.
NOT_RETRIED = frozenset({"batch_cancelled"})
# How long a batch handed to a poll task is not handed out again; a lost message (a poll worker
# killed, the broker restarted) costs this. A poll that outlives it is only polled twice
# (each poll locks its batch, SKIP LOCKED).
POLL_LEASE = timedelta(seconds=15)
# Attempts of a job whose model left the catalog: the model's default.
_DEFAULT_ATTEMPTS: int = ModelConfig.model_fields["max_attempts"].default


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


def poll_batch(
    session: Session, *, batch_id: uuid.UUID, catalog: Catalog, backoff: tuple[float, float]
) -> BatchState | None:
    """Poll one batch with its provider's shared client (what the ``poll_batch`` task runs);
    None for an unknown batch, one no longer submitted, or a failed results download."""
    route = repository.route_of(session, batch_id=batch_id)
    if route is None:
        return None
    if route[0] not in catalog.providers:
        # Nothing left to reach it with; the batch waits for its provider to come back.
        log.error("batch %s: provider %s is no longer in the catalog", batch_id, route[0])
        return None
    try:
        return poll(
            session,
            batch_id=batch_id,
            provider=shared_provider(catalog, route[0]),
            catalog=catalog,
            backoff=backoff,
        )
    except ProviderError:
        # The results download failed. The poll's own backoff (``next_poll_at`` = now +
        # poll_delay) commits with the session and replaces the lease: the batch is polled
        # again after that delay, and nothing of its results is applied before.
        log.warning("polling batch %s failed", batch_id, exc_info=True)
        return None


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
            and not job_repository.has_jobs(session, batch_id=batch.id, state=JobState.submitted)
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
        apply_outcomes(
            session, batch=batch, results=[], status=status, catalog=catalog, retry_all=True
        )
        batch.state, batch.error, batch.completed_at = BatchState.failed, status.error, now
        return batch.state
    batch.provider_status = status.status
    if not status.ended:
        return batch.state
    results = (
        provider.results(status) if status.status in {"completed", "cancelled", "expired"} else []
    )
    apply_outcomes(session, batch=batch, results=results, status=status, catalog=catalog)
    batch.state = BatchState.completed if status.status == "completed" else BatchState.failed
    batch.error = status.error
    batch.output_file_id = status.output_file_id
    batch.error_file_id = status.error_file_id
    batch.completed_at = utcnow()
    return batch.state


def retry_for(
    job: job_repository.BatchMember, *, catalog: Catalog, reason: str, code: str | None
) -> Retry | None:
    """The retry of a retryable failure, or None once the job used its attempts. A job whose
    model left the catalog gets the default attempts; its retry is routed again."""
    name = job.model or ""
    model = catalog.model(name) if catalog.has_model(name) else None
    attempts = job.attempts + 1
    if attempts >= (model.max_attempts if model else _DEFAULT_ATTEMPTS):
        return None
    mode = job.mode
    if code == "batch_expired" and model is not None and model.on_expiry == "realtime":
        mode = JobMode.realtime
    return Retry(job.id, attempts, mode, reason)


def batch_prices(batch: ProviderBatch, catalog: Catalog) -> ModelConfig:
    """The prices of a batch's model: the prices it was claimed at, when it recorded them (a
    model that left the catalog since keeps its open batches priced), else the catalog's."""
    if batch.input_per_mtok is None or batch.output_per_mtok is None:
        return catalog.model(batch.model)
    config = catalog.model(batch.model) if catalog.has_model(batch.model) else None
    return ModelConfig(
        name=batch.model,
        provider=batch.provider,
        tier=config.tier if config else "",
        input_per_mtok=batch.input_per_mtok,
        output_per_mtok=batch.output_per_mtok,
        batch_discount=batch.batch_discount or Decimal(0),
        # Prompt-cache prices are not recorded per batch: the catalog's, while it has them.
        cached_input_per_mtok=config.cached_input_per_mtok if config else None,
        cache_write_per_mtok=config.cache_write_per_mtok if config else None,
        context_tokens=config.context_tokens if config else 1,
    )


def apply_outcomes(
    session: Session,
    *,
    batch: ProviderBatch,
    results: list[BatchResult],
    status: BatchStatus,
    catalog: Catalog,
    retry_all: bool = False,
    list_priced: frozenset[str] = frozenset(),
) -> None:
    """Apply results by ``custom_id`` onto the batch's jobs still ``submitted``.

    ``list_priced``: the requests of a flex batch that were sent realtime instead (flex
    refused them), priced at list price rather than the batch's mode.

    Retryable failures (expired, rate-limited, 5xx) go back to a window until the model's
    ``max_attempts``; other failures, and the last attempt, fail with the provider's reason.
    Jobs the results leave out are retried when ``retry_all`` or the batch expired or
    completed (it did not try every request), else failed.
    """
    model = batch_prices(batch, catalog)
    jobs = {
        str(job.id): job
        for job in job_repository.batch_members(
            session, batch_id=batch.id, state=JobState.submitted
        )
    }
    now = utcnow()
    baselines = tenant_service.baseline_models(
        session, tenant_ids=[job.tenant_id for job in jobs.values()]
    )
    outcomes: list[JobOutcome] = []
    retries: list[Retry] = []
    answers: list[tuple[job_repository.BatchMember, str, str, BatchResult]] = []
    seen: set[str] = set()
    refused: list[tuple[job_repository.BatchMember, BatchResult]] = []
    for result in results:
        job = jobs.get(result.custom_id)
        if job is None or result.custom_id in seen:
            continue  # not ours, already applied, or cancelled meanwhile
        seen.add(result.custom_id)
        if result.error is not None and fallbacks.takes_fallback(result):
            refused.append((job, result))  # down the model's chain, below
            continue
        if result.error is not None or result.content is None:
            reason = f"provider error: {result.error}"
            retry = None
            if result.retryable and result.error_code not in NOT_RETRIED:
                retry = retry_for(job, catalog=catalog, reason=reason, code=result.error_code)
            if retry is not None:
                retries.append(retry)
            else:
                outcomes.append(JobOutcome.failed(job.id, error=reason, at=now))
            continue
        # Realtime calls pay list price, batch calls get the model's batch discount, tokens
        # read from or written to the provider's prompt cache their own prices.
        usage = ledger_service.TokenUsage(
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cached_input_tokens=result.cached_input_tokens,
            cache_write_tokens=result.cache_write_tokens,
        )
        costs = ledger_service.chain(
            catalog,
            model=model,
            mode=JobMode.realtime if result.custom_id in list_priced else batch.mode,
            usage=usage,
            naive_model=baselines.get(job.tenant_id),
        )
        outcomes.append(
            JobOutcome(
                job.id,
                JobState.completed,
                result.content,
                None,
                result.input_tokens,
                result.output_tokens,
                result.cached_input_tokens,
                result.cache_write_tokens,
                costs,
                now,
            )
        )
        if job.cache_key:
            answers.append((job, job.cache_key, result.content, result))
    moved = fallbacks.reroutes(session, failures=refused, catalog=catalog, now=now)
    for job, result in refused:
        if job.id in moved:
            retries.append(moved[job.id])
        else:
            outcomes.append(JobOutcome.failed(job.id, error=f"provider error: {result.error}",
                                              at=now))  # fmt: skip
    reason = status.error or f"provider batch ended {status.status} without a result for this job"
    # A batch that expired (or completed yet left a request out) did not try every request.
    retryable = retry_all or status.status in {"expired", "completed"}
    code = "batch_expired" if status.status == "expired" else None
    for custom_id, job in jobs.items():
        if custom_id in seen:
            continue
        retry = retry_for(job, catalog=catalog, reason=reason, code=code) if retryable else None
        if retry is not None:
            retries.append(retry)
        else:
            outcomes.append(JobOutcome.failed(job.id, error=reason, at=now))
    transitions.apply_results(session, outcomes, from_state=JobState.submitted)
    transitions.requeue(session, retries, from_state=JobState.submitted)
    # Only answers the cache keeps need their request text: jobs that skip the cache read none.
    texts = job_repository.request_texts(session, ids=[job.id for job, *_ in answers])
    writes = [
        cache_service.CacheWrite(
            tenant_id=job.tenant_id,
            cache_key=cache_key,
            model=batch.model,
            result=content,
            source_job_id=job.id,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cache_mode=job.cache_mode,
            prompt=texts[job.id].prompt,
            document=texts[job.id].document,
        )
        for job, cache_key, content, result in answers
    ]
    cache_service.store_many(session, writes)
    _record_superseded(session, batch=batch, model=model, results=results, members=jobs)
    if retries:
        queue.enqueue(session, queue.COLLECT)


def _record_superseded(
    session: Session,
    *,
    batch: ProviderBatch,
    model: ModelConfig,
    results: list[BatchResult],
    members: dict[str, job_repository.BatchMember],
) -> None:
    """Answers for jobs escalated out of this batch (``escalation``) came too late: they are
    not applied (the job completes, or completed, from its escalation), but the provider
    charges for them, so the ledger records each as superseded with what it cost."""
    late: dict[uuid.UUID, BatchResult] = {}
    for result in results:
        if result.content is None or result.custom_id in members:
            continue
        try:
            late[uuid.UUID(result.custom_id)] = result
        except ValueError:
            continue  # not one of ours
    tenants = job_escalation.escalated_from(session, batch_id=batch.id, job_ids=list(late))
    lines = []
    for job_id, tenant_id in tenants.items():
        result = late[job_id]
        usage = ledger_service.TokenUsage(
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cached_input_tokens=result.cached_input_tokens,
            cache_write_tokens=result.cache_write_tokens,
        )
        lines.append(
            ledger_service.LateLine(
                job_id=job_id,
                tenant_id=tenant_id,
                provider_batch_id=batch.id,
                provider=batch.provider,
                model=batch.model,
                mode=batch.mode.value,
                usage=usage,
                cost_usd=ledger_service.paid_price(model, batch.mode, usage),
            )
        )
    if lines:
        log.info("batch %s: %d late answers of escalated jobs superseded", batch.id, len(lines))
    ledger_service.record_superseded(session, lines)
