"""The submitter: a pending batch goes to its provider, as one Batch API call or, for a
realtime micro-batch, as concurrent realtime calls whose outcomes are stored at once."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime

from sqlalchemy.orm import Session

from app.batching import repository
from app.batching.collector import enqueue_ingest
from app.batching.results import apply_outcomes
from app.catalog.catalog import Catalog
from app.jobs import flex as job_flex
from app.jobs import repository as job_repository
from app.jobs import transitions
from app.kit import queue
from app.kit.db import session_scope
from app.kit.prompts import PromptPrefix, build_messages, prompt_prefix
from app.models import BatchState, JobMode, JobState, ProviderBatch, utcnow
from app.providers.base import (
    BatchHandle,
    BatchProvider,
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderError,
    RealtimeProvider,
    split_requests,
)
from app.providers.registry import (
    realtime_concurrency,
    shared_flex_provider,
    shared_provider,
    shared_realtime_provider,
)

# A flex call OpenAI refused falls back to a realtime call at list price: 429 "resource
# unavailable" (no flex capacity now, after the flex adapter's retry), or 400 (OpenAI offers
# flex on some models only, and answers 400 invalid_request_error for the others; a request
# that is bad in itself fails again, realtime, with the provider's reason).
FLEX_REFUSED = {
    "http_429": "flex refused (429 resource unavailable): sent realtime at list price",
    "http_400": "flex refused (400: the model may not offer flex): sent realtime at list price",
}
FLEX_FALLBACK = FLEX_REFUSED["http_429"]


def submit_batch(*, batch_id: uuid.UUID, catalog: Catalog) -> bool:
    """Send a pending batch to its provider, in its own transactions; False when there was
    nothing to do. What the ``submit_batch`` task runs.

    A realtime micro-batch is sent and its outcomes stored in one transaction
    (``run_realtime``). A batch for a Batch API first has its attempt counted and committed,
    then is submitted (``submit``): a later attempt knows this one may have reached the
    provider. A retryable ``ProviderError`` leaves the batch pending for another attempt.
    """
    with session_scope() as session:
        route = repository.route_of(session, batch_id=batch_id)
        if route is None:
            return False
        provider_name, mode, model = route
        left = not catalog.has_model(model) or provider_name not in catalog.providers
        # A batch of a model that left may still have reached its provider in an earlier
        # attempt (a worker killed mid-call, an answer lost): it is looked up, not dropped.
        if left and (
            mode != JobMode.batch
            or provider_name not in catalog.providers
            or not repository.attempted(session, batch_id=batch_id)
        ):
            return reroute(session, batch_id=batch_id, reason=f"{model} left the catalog")
        if mode in (JobMode.realtime, JobMode.flex):
            realtime = shared_realtime_provider(catalog, provider_name)
            flex = mode == JobMode.flex  # flex calls refused fall back to realtime ones
            return run_realtime(
                session,
                batch_id=batch_id,
                provider=shared_flex_provider(catalog, provider_name) if flex else realtime,
                concurrency=_concurrency(catalog, provider_name, model),
                catalog=catalog,
                fallback=realtime if flex else None,
            )
    with session_scope() as session:
        attempt = repository.record_attempt(session, batch_id=batch_id)
    if attempt is None:
        return False
    with session_scope() as session:
        return submit(
            session,
            batch_id=batch_id,
            provider=shared_provider(catalog, provider_name),
            attempt=attempt,
            catalog=catalog,
            reroute_reason=f"{model} left the catalog" if left else None,
        )


def _concurrency(catalog: Catalog, provider_name: str, model: str) -> int:
    """The provider's concurrent calls, at most the model's ``max_concurrent_requests`` (a
    self-hosted server's slots: the router sends no more jobs than that to it at once)."""
    calls = realtime_concurrency(catalog, provider_name)
    cap = catalog.model(model).max_concurrent_requests if catalog.has_model(model) else None
    return min(calls, cap) if cap is not None else calls


def reroute(session: Session, *, batch_id: uuid.UUID, reason: str) -> bool:
    """A pending batch whose model (or provider) left the catalog is not sent: it fails with
    ``reason`` and its jobs go back to ingest to be routed again."""
    batch = repository.lock_batch(session, batch_id=batch_id, state=BatchState.pending)
    if batch is None:
        return False
    ids = transitions.unroute(
        session, provider=batch.provider, model=batch.model, batch_id=batch.id
    )
    batch.state, batch.error = BatchState.failed, f"not sent: {reason}"
    enqueue_ingest(session, ids)
    return True


def _requests(
    jobs: list[job_repository.BatchJob], *, min_cache_tokens: int | None = None
) -> list[BatchRequest]:
    """The batch's requests, jobs that share a prompt prefix next to each other (groups in the
    order of their first job), each carrying that prefix when at least two share it and it is
    at least ``min_cache_tokens`` long (the model's shortest cacheable prefix; None: the
    model has no prompt caching)."""
    prefixes = {job.id: prompt_prefix(job) for job in jobs}
    first: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for index, prefix in enumerate(prefixes.values()):
        if prefix is not None:
            first.setdefault(prefix.key, index)
            counts[prefix.key] += 1

    def group(item: tuple[int, job_repository.BatchJob]) -> int:
        prefix = prefixes[item[1].id]
        return item[0] if prefix is None else first[prefix.key]

    ordered = [job for _, job in sorted(enumerate(jobs), key=group)]

    def shared(prefix: PromptPrefix | None) -> PromptPrefix | None:
        if prefix is None or min_cache_tokens is None or counts[prefix.key] < 2:
            return None
        return prefix if prefix.tokens >= min_cache_tokens else None

    return [
        BatchRequest(
            str(job.id),
            build_messages(job),
            job.max_output_tokens,
            job.temperature,
            prefix=shared(prefixes[job.id]),
        )
        for job in ordered
    ]


def _min_cache_tokens(catalog: Catalog | None, model: str) -> int | None:
    if catalog is None or not catalog.has_model(model):
        return None
    return catalog.model(model).min_cache_tokens


def _lock_with_jobs(
    session: Session, *, batch_id: uuid.UUID
) -> tuple[ProviderBatch, list[job_repository.BatchJob]] | None:
    """A pending batch, locked, with its claimed jobs; None when it is not pending (or
    another worker holds it). A batch left with no jobs is failed here and comes back empty."""
    batch = repository.lock_batch(session, batch_id=batch_id, state=BatchState.pending)
    if batch is None:
        return None
    jobs = job_repository.batch_jobs(session, batch_id=batch.id, state=JobState.batched)
    if not jobs:
        batch.state, batch.error = BatchState.failed, "no jobs left to submit"
    return batch, jobs


def submit(
    session: Session,
    *,
    batch_id: uuid.UUID,
    provider: BatchProvider,
    attempt: int | None = None,
    catalog: Catalog | None = None,
    reroute_reason: str | None = None,
) -> bool:
    """Send a pending batch to its provider. Returns False when there was nothing to do.

    ``reroute_reason``: the batch is not to be sent (its model left the catalog), but an
    earlier attempt may have sent it: the provider's batch is adopted if it holds one, and
    the jobs are routed again (``reroute``) only if it does not.

    The batch row is locked for the duration, so only one worker submits it. A batch the
    provider may already hold (a worker killed after the provider accepted it) is looked up
    and adopted, not resent; only the first recorded ``attempt`` can skip that lookup, since
    no earlier one can have reached the provider. Jobs that do not fit the provider's limits
    go back to their window. Requests sharing a prompt prefix are sent together, marked for
    the provider's prompt cache (``_requests``; the catalog gives the shortest cacheable
    prefix, and without it nothing is marked). A provider that refuses the batch itself
    fails it and its jobs; a retryable ``ProviderError`` is raised, for the caller to roll
    back and try again.
    """
    locked = _lock_with_jobs(session, batch_id=batch_id)
    if locked is None:
        return False
    batch, jobs = locked
    if not jobs:
        return True
    now = utcnow()
    if reroute_reason is not None:
        handle = provider.find_batch(
            reference=str(batch.id),
            custom_ids=frozenset(str(job.id) for job in jobs),
            since=batch.created_at,
        )
        if handle is None:
            return reroute(session, batch_id=batch.id, reason=reroute_reason)
        _record_submitted(session, batch=batch, handle=handle, count=len(jobs), at=now)
        return True
    try:
        requests = _requests(jobs, min_cache_tokens=_min_cache_tokens(catalog, batch.model))
        chunks = split_requests(provider, model=batch.model, requests=requests)
        sent = chunks[0]
        # Every attempt after the first may follow one whose batch the provider made (a
        # worker killed, an answer lost): it looks for that batch before creating one.
        handle = None
        if attempt != 1:
            handle = provider.find_batch(
                reference=str(batch.id),
                custom_ids=frozenset(r.custom_id for r in sent),
                since=batch.created_at,
            )
        if len(chunks) > 1:
            # The estimates let too much in: send what fits, the rest waits for a later batch.
            overflow = {r.custom_id for chunk in chunks[1:] for r in chunk}
            transitions.release(session, job_ids=[uuid.UUID(i) for i in overflow])
            jobs = [job for job in jobs if str(job.id) not in overflow]
            queue.enqueue(session, queue.COLLECT)
        if handle is None:
            handle = provider.submit(reference=str(batch.id), model=batch.model, requests=sent)
    except ProviderError as exc:
        if exc.retryable:
            raise
        # The provider rejected the batch itself; resending cannot succeed.
        batch.state, batch.error = BatchState.failed, str(exc)
        transitions.fail_batch(
            session, batch_id=batch.id, error=f"provider refused the batch: {exc}", at=now
        )
        return True
    _record_submitted(session, batch=batch, handle=handle, count=len(jobs), at=now)
    return True


def _record_submitted(
    session: Session, *, batch: ProviderBatch, handle: BatchHandle, count: int, at: datetime
) -> None:
    """The provider holds the batch: it and its jobs are submitted, polled from now on."""
    batch.external_id = handle.external_id
    batch.input_file_id = handle.input_file_id
    batch.provider_status = handle.status
    batch.state = BatchState.submitted
    batch.submitted_at = at
    batch.request_count = count
    transitions.mark_submitted(session, batch_id=batch.id, at=at)


def run_realtime(
    session: Session,
    *,
    batch_id: uuid.UUID,
    provider: RealtimeProvider,
    concurrency: int,
    catalog: Catalog,
    fallback: RealtimeProvider | None = None,
) -> bool:
    """Send a pending realtime (or flex) micro-batch as concurrent calls and store every
    outcome.

    Runs in one transaction under the batch's lock: a worker killed mid-way leaves the batch
    pending (nothing applied), and the sweeper sends it again. A flex batch (``provider``
    the flex adapter) sends the calls flex refused once more through ``fallback``, the
    realtime adapter (``_flex_fallback``).
    """
    locked = _lock_with_jobs(session, batch_id=batch_id)
    if locked is None:
        return False
    batch, jobs = locked
    if not jobs:
        return True
    now = utcnow()
    transitions.mark_submitted(session, batch_id=batch.id, at=now)
    requests = _requests(jobs, min_cache_tokens=_min_cache_tokens(catalog, batch.model))
    results = provider.complete_many(model=batch.model, requests=requests, concurrency=concurrency)
    list_priced: frozenset[str] = frozenset()
    if fallback is not None:
        results, list_priced = _flex_fallback(
            session, model=batch.model, requests=requests, results=results,
            fallback=fallback, concurrency=concurrency,
        )  # fmt: skip
    status = BatchStatus(batch.mode, "completed", True, None, None, None)
    apply_outcomes(
        session, batch=batch, results=results, status=status, catalog=catalog,
        list_priced=list_priced,
    )  # fmt: skip
    batch.state, batch.provider_status = BatchState.completed, "completed"
    batch.submitted_at = batch.completed_at = now
    batch.request_count = len(jobs)
    return True


def _flex_fallback(
    session: Session,
    *,
    model: str,
    requests: list[BatchRequest],
    results: list[BatchResult],
    fallback: RealtimeProvider,
    concurrency: int,
) -> tuple[list[BatchResult], frozenset[str]]:
    """The policy for flex calls OpenAI refused (for capacity, or a model without flex): each
    is sent at once as a
    realtime call (the deadline that chose flex may not survive a wait), priced at list
    price, and its job says so (mode ``realtime``, ``route_reason``, ``routing``). Returns
    the results with those calls' new outcomes, and their ids."""
    refused = {r.custom_id: r.error_code for r in results if r.error_code in FLEX_REFUSED}
    if not refused:
        return results, frozenset()
    for code, reason in FLEX_REFUSED.items():
        ids = sorted(i for i, refusal in refused.items() if refusal == code)
        if ids:
            job_flex.fell_back_to_realtime(
                session, job_ids=[uuid.UUID(i) for i in ids], reason=reason
            )
    again = fallback.complete_many(
        model=model,
        requests=[r for r in requests if r.custom_id in refused],
        concurrency=concurrency,
    )
    by_id = {r.custom_id: r for r in again}
    return [by_id.get(r.custom_id, r) for r in results], frozenset(refused)
