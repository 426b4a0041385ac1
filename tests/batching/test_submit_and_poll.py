"""Submitting, polling and sweeping batches with the real adapter and the simulator over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounting import service as accounting_service
from app.batching import collector, results, submitter, sweeper
from app.cache import service as cache_service
from app.catalog.catalog import Catalog, get_catalog
from app.config import get_settings
from app.kit import queue
from app.kit.prompts import build_messages
from app.models import BatchState, CacheEntry, Job, JobState, ProviderBatch, Tenant, utcnow
from app.providers.base import BatchProvider, BatchRequest, ProviderError
from app.providers.openai_batch import OpenAIBatchProvider
from app.simulator.summarise import count_prompt_tokens, count_tokens, simulate_completion
from tests.conftest import free_port
from tests.factories import make_job

MINI = "gpt-4o-mini"
DUE = timedelta(seconds=5)  # past the test catalog's max_wait_seconds = 0.5
POLL_TIMEOUT = 15.0


@pytest.fixture
def provider(simulator: str) -> Iterator[OpenAIBatchProvider]:
    adapter = OpenAIBatchProvider(base_url=simulator, api_key="test", timeout=5.0)
    yield adapter
    adapter.close()


@pytest.fixture
def catalog() -> Catalog:
    return get_catalog()


def pending_batch(
    db: Session,
    tenant: Tenant,
    catalog: Catalog,
    *,
    size: int = 3,
    prompts: list[str] | None = None,
) -> tuple[ProviderBatch, list[Job]]:
    """Due waiting jobs (distinct prompts unless given, with cache keys) in one pending batch."""
    tier = catalog.model(MINI).tier
    if prompts is None:
        prompts = [
            f"What is the capital of country number {i} ({uuid.uuid4().hex[:8]})?"
            for i in range(size)
        ]
    jobs = []
    for prompt in prompts:
        job = make_job(
            db,
            tenant=tenant,
            prompt=prompt,
            state=JobState.waiting,
            model=MINI,
            routed_ago=DUE,
        )
        job.cache_key = cache_service.cache_key(job, tier=tier)
        jobs.append(job)
    db.commit()
    created = collector.collect(db, catalog=catalog)
    db.commit()
    assert len(created) == 1
    batch = db.get(ProviderBatch, created[0])
    assert batch is not None
    assert batch.state == BatchState.pending
    return batch, jobs


def simulator_batches(provider_http: httpx.Client, reference: uuid.UUID) -> list[dict[str, Any]]:
    """The simulator's batches tagged with our batch id (it lists newest first)."""
    response = provider_http.get("batches", params={"limit": 100})
    response.raise_for_status()
    return [
        b
        for b in response.json()["data"]
        if (b.get("metadata") or {}).get("thrifty_batch_id") == str(reference)
    ]


def poll_until_ended(
    db: Session, batch_id: uuid.UUID, provider: BatchProvider, catalog: Catalog
) -> BatchState:
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        state = results.poll(db, batch_id=batch_id, provider=provider, catalog=catalog)
        db.commit()
        if state in {BatchState.completed, BatchState.failed}:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {state} after {POLL_TIMEOUT} s")
        time.sleep(0.1)


def money(value: Decimal) -> Decimal:
    """``value`` as the Numeric(18, 8) columns store it."""
    return value.quantize(Decimal("0.00000001"), rounding=ROUND_HALF_UP)


def test_submit_sends_a_pending_batch_once(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    provider: OpenAIBatchProvider,
    provider_http: httpx.Client,
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog)

    assert submitter.submit(db, batch_id=batch.id, provider=provider) is True
    db.commit()

    db.refresh(batch)
    assert batch.state == BatchState.submitted
    assert batch.external_id is not None
    assert batch.external_id.startswith("batch_")
    assert batch.input_file_id is not None
    assert batch.provider_status in {"validating", "in_progress"}
    assert batch.submitted_at is not None
    assert batch.request_count == len(jobs)
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.submitted
        assert job.submitted_at == batch.submitted_at

    # A second submission (a redelivered message) does nothing.
    external_id = batch.external_id
    assert submitter.submit(db, batch_id=batch.id, provider=provider) is False
    db.commit()
    db.refresh(batch)
    assert batch.external_id == external_id
    assert batch.state == BatchState.submitted

    held = simulator_batches(provider_http, batch.id)
    assert [b["id"] for b in held] == [external_id]
    assert held[0]["input_file_id"] == batch.input_file_id
    assert held[0]["endpoint"] == "/v1/chat/completions"


def test_submit_adopts_a_batch_the_provider_already_holds(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    provider: OpenAIBatchProvider,
    provider_http: httpx.Client,
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog)
    # The worker sent the batch, then died before recording the provider's answer.
    requests = [BatchRequest(str(j.id), build_messages(j), j.max_output_tokens) for j in jobs]
    handle = provider.submit(reference=str(batch.id), model=batch.model, requests=requests)
    db.refresh(batch)
    assert batch.external_id is None  # pending_batch checked it is still pending

    assert submitter.submit(db, batch_id=batch.id, provider=provider) is True
    db.commit()

    db.refresh(batch)
    assert batch.state == BatchState.submitted
    assert batch.external_id == handle.external_id
    assert batch.input_file_id == handle.input_file_id
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.submitted
    held = simulator_batches(provider_http, batch.id)
    assert [b["id"] for b in held] == [handle.external_id]


def test_poll_applies_every_result_once(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    provider: OpenAIBatchProvider,
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog, size=4)
    assert submitter.submit(db, batch_id=batch.id, provider=provider)
    db.commit()

    assert poll_until_ended(db, batch.id, provider, catalog) == BatchState.completed

    db.refresh(batch)
    assert batch.state == BatchState.completed
    assert batch.provider_status == "completed"
    assert batch.output_file_id is not None
    assert batch.completed_at is not None
    assert batch.error is None
    model = catalog.model(batch.model)
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.completed, job.error
        assert job.error is None
        # The simulator is deterministic: each job got the answer to its own prompt.
        messages = build_messages(job)
        expected = simulate_completion(messages, batch.model, job.max_output_tokens).content
        assert job.result == expected
        assert job.input_tokens == count_prompt_tokens(messages)
        assert job.output_tokens == count_tokens(expected)
        assert job.input_tokens > 0
        assert job.output_tokens > 0
        cost = accounting_service.batch_price(
            model, input_tokens=job.input_tokens, output_tokens=job.output_tokens
        )
        naive = accounting_service.naive_price(
            catalog, input_tokens=job.input_tokens, output_tokens=job.output_tokens
        )
        assert job.cost_usd == money(cost)
        assert job.naive_cost_usd == money(naive)
        assert Decimal(0) < job.cost_usd < job.naive_cost_usd
        assert job.completed_at is not None
        assert job.submitted_at is not None
        assert job.completed_at >= job.submitted_at

        entry = db.scalars(
            select(CacheEntry).where(
                CacheEntry.tenant_id == job.tenant_id, CacheEntry.cache_key == job.cache_key
            )
        ).one()
        assert entry.result == job.result
        assert entry.source_job_id == job.id
        assert entry.model == batch.model
        assert (entry.input_tokens, entry.output_tokens) == (job.input_tokens, job.output_tokens)
    assert db.scalar(select(func.count()).select_from(CacheEntry)) == len(jobs)

    before = {j.id: (j.state, j.result, j.cost_usd, j.updated_at, j.completed_at) for j in jobs}
    batch_completed_at = batch.completed_at

    # Polling an ended batch again is a no-op.
    assert results.poll(db, batch_id=batch.id, provider=provider, catalog=catalog) is None
    db.commit()
    db.refresh(batch)
    assert batch.completed_at == batch_completed_at

    # Even applying the provider's results a second time (the batch looks live again, as
    # after a lost commit) writes nothing onto jobs that already have theirs.
    batch.state = BatchState.submitted
    db.commit()
    assert (
        results.poll(db, batch_id=batch.id, provider=provider, catalog=catalog)
        == BatchState.completed
    )
    db.commit()
    for job in jobs:
        db.refresh(job)
        assert (job.state, job.result, job.cost_usd, job.updated_at, job.completed_at) == before[
            job.id
        ]
    assert db.scalar(select(func.count()).select_from(CacheEntry)) == len(jobs)


def test_a_job_cancelled_after_submission_gets_no_result(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    provider: OpenAIBatchProvider,
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog, size=3)
    assert submitter.submit(db, batch_id=batch.id, provider=provider)
    db.commit()
    cancelled = jobs[1]
    db.refresh(cancelled)
    cancelled.state = JobState.cancelled
    db.commit()

    assert poll_until_ended(db, batch.id, provider, catalog) == BatchState.completed

    db.refresh(cancelled)
    assert cancelled.state == JobState.cancelled
    assert cancelled.result is None
    assert cancelled.cost_usd is None
    assert cancelled.input_tokens is None
    assert cancelled.completed_at is None
    assert db.scalar(select(CacheEntry).where(CacheEntry.cache_key == cancelled.cache_key)) is None
    for job in (jobs[0], jobs[2]):
        db.refresh(job)
        assert job.state == JobState.completed
        assert job.result


def test_a_batch_with_every_job_cancelled_is_not_sent(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    provider: OpenAIBatchProvider,
    provider_http: httpx.Client,
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog, size=2)
    for job in jobs:
        db.refresh(job)
        job.state = JobState.cancelled
    db.commit()

    assert submitter.submit(db, batch_id=batch.id, provider=provider) is True
    db.commit()
    db.refresh(batch)
    assert batch.state == BatchState.failed
    assert batch.external_id is None
    assert simulator_batches(provider_http, batch.id) == []


def test_a_provider_refusal_fails_the_batch_and_its_jobs(
    db: Session, tenant: tuple[Tenant, str], catalog: Catalog, simulator: str
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog)
    refusing = OpenAIBatchProvider(base_url=simulator + "/nonexistent", api_key="test", timeout=5.0)
    try:
        assert submitter.submit(db, batch_id=batch.id, provider=refusing) is True
    finally:
        refusing.close()
    db.commit()

    db.refresh(batch)
    assert batch.state == BatchState.failed
    assert batch.external_id is None
    assert batch.error is not None
    assert "404" in batch.error
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.failed
        assert job.error is not None
        assert "provider" in job.error
        assert "404" in job.error
        assert job.completed_at is not None
        assert job.result is None
    # A failed batch is not submitted again.
    assert submitter.submit(db, batch_id=batch.id, provider=refusing) is False


def test_a_batch_the_provider_rejects_after_the_upload_fails_its_jobs(
    db: Session, tenant: tuple[Tenant, str], catalog: Catalog, simulator: str
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog)
    # The upload succeeds; creating the batch is refused (400: unsupported completion window).
    refusing = OpenAIBatchProvider(
        base_url=simulator, api_key="test", timeout=5.0, completion_window="1h"
    )
    try:
        assert submitter.submit(db, batch_id=batch.id, provider=refusing) is True
    finally:
        refusing.close()
    db.commit()

    db.refresh(batch)
    assert batch.state == BatchState.failed
    assert batch.error is not None
    assert "completion_window" in batch.error
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.failed
        assert job.error is not None
        assert job.error.startswith("provider refused the batch")


def test_a_batch_the_provider_fails_fails_every_job_with_its_reason(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    provider: OpenAIBatchProvider,
    provider_http: httpx.Client,
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog, size=2)
    # A batch for our reference whose input the provider will fail in validation, adopted as
    # after a crash: the provider's failure must reach every job.
    upload = provider_http.post(
        "files",
        data={"purpose": "batch"},
        files={"file": ("broken.jsonl", b"this is not json\n", "application/jsonl")},
    )
    upload.raise_for_status()
    created = provider_http.post(
        "batches",
        json={
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"thrifty_batch_id": str(batch.id)},
        },
    )
    created.raise_for_status()
    assert submitter.submit(db, batch_id=batch.id, provider=provider) is True
    db.commit()
    db.refresh(batch)
    assert batch.external_id == created.json()["id"]

    assert poll_until_ended(db, batch.id, provider, catalog) == BatchState.failed

    db.refresh(batch)
    assert batch.provider_status == "failed"
    assert batch.error is not None
    assert "JSON" in batch.error
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.failed
        assert job.error == batch.error
        assert job.result is None
        assert job.cost_usd is None
        assert job.completed_at is not None
    assert db.scalar(select(func.count()).select_from(CacheEntry)) == 0


def test_a_batch_cancelled_at_the_provider_ends_every_job(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    provider: OpenAIBatchProvider,
    provider_http: httpx.Client,
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog, size=4)
    assert submitter.submit(db, batch_id=batch.id, provider=provider)
    db.commit()
    db.refresh(batch)
    provider_http.post(f"batches/{batch.external_id}/cancel").raise_for_status()

    assert poll_until_ended(db, batch.id, provider, catalog) == BatchState.failed

    db.refresh(batch)
    assert batch.provider_status == "cancelled"
    for job in jobs:
        db.refresh(job)
        # What the provider finished before the cancel is kept; the rest fails, saying why.
        if job.state == JobState.completed:
            assert job.result
            assert job.cost_usd is not None
        else:
            assert job.state == JobState.failed
            assert job.error is not None
            assert "cancelled" in job.error
            assert job.result is None


def test_duplicate_questions_in_one_batch_share_one_cache_entry(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    provider: OpenAIBatchProvider,
) -> None:
    question = f"Why is the sky blue? ({uuid.uuid4().hex[:8]})"
    batch, jobs = pending_batch(db, tenant[0], catalog, prompts=[question, question])
    assert jobs[0].cache_key == jobs[1].cache_key
    assert submitter.submit(db, batch_id=batch.id, provider=provider)
    db.commit()

    assert poll_until_ended(db, batch.id, provider, catalog) == BatchState.completed

    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.completed
    assert jobs[0].result == jobs[1].result
    entries = list(db.scalars(select(CacheEntry)))
    assert len(entries) == 1
    assert entries[0].source_job_id in {j.id for j in jobs}
    assert entries[0].result == jobs[0].result


def test_an_unreachable_provider_is_retryable_and_loses_nothing(
    db: Session, tenant: tuple[Tenant, str], catalog: Catalog
) -> None:
    batch, jobs = pending_batch(db, tenant[0], catalog)
    unreachable = OpenAIBatchProvider(
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        api_key="test",
        timeout=2.0,
        transport=httpx.HTTPTransport(retries=0),
    )
    try:
        with pytest.raises(ProviderError) as raised:
            submitter.submit(db, batch_id=batch.id, provider=unreachable)
    finally:
        unreachable.close()
    assert raised.value.retryable is True
    db.rollback()  # as the worker's task does when it raises

    db.refresh(batch)
    assert batch.state == BatchState.pending
    assert batch.external_id is None
    assert batch.error is None
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.batched
        assert job.provider_batch_id == batch.id
        assert job.error is None


def test_sweep_re_drives_only_stale_work_in_each_state(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    stale_after = timedelta(seconds=get_settings().stale_after_seconds)
    old = stale_after * 5
    stale_job = make_job(db, tenant=tenant[0], updated_ago=old)
    make_job(db, tenant=tenant[0])  # fresh queued job
    make_job(db, tenant=tenant[0], state=JobState.waiting, updated_ago=old)  # stuck in a window
    now = utcnow()

    def provider_batch(state: BatchState, updated_ago: timedelta) -> ProviderBatch:
        batch = ProviderBatch(
            provider="openai",
            model=MINI,
            mode="batch",
            state=state,
            request_count=0,
            updated_at=now - updated_ago,
        )
        db.add(batch)
        return batch

    stale_batch = provider_batch(BatchState.pending, old)
    provider_batch(BatchState.pending, timedelta(0))
    provider_batch(BatchState.submitted, old)
    provider_batch(BatchState.failed, old)
    db.commit()
    assert not db.info.get("thrifty_outbox")

    counts = sweeper.sweep(db, stale_after=stale_after)

    assert counts == {
        "queued_jobs": 1,
        "waiting_jobs": 1,
        "orphaned_jobs": 0,
        "pending_batches": 1,
        "stranded_jobs": 0,
        "unpolled_batches": 1,
        "stranded_followers": 0,
        "escalated_jobs": 0,
    }
    assert db.info["thrifty_outbox"] == [
        queue.Message(queue.INGEST, ([str(stale_job.id)],)),
        queue.Message(queue.COLLECT, ()),
        queue.Message(queue.SUBMIT_BATCH, (str(stale_batch.id),)),
        queue.Message(queue.POLL_BATCHES, ()),
    ]
    db.rollback()
    assert "thrifty_outbox" not in db.info

    # Seen from far enough in the future, the fresh ones are stale too.
    counts = sweeper.sweep(db, stale_after=stale_after, now=utcnow() + old)
    assert (counts["queued_jobs"], counts["pending_batches"]) == (2, 2)
    db.rollback()


def test_a_redrive_sweep_sends_every_hint_again_whatever_its_age(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    """After the broker lost its messages (or a worker that may have held some was replaced),
    nothing waits for the stale timeout: fresh work is hinted again, and every submitted batch
    is due for a poll now, its lease dropped. The repairs still wait for the stale timeout."""
    stale_after = timedelta(hours=1)
    queued = make_job(db, tenant=tenant[0])
    make_job(db, tenant=tenant[0], state=JobState.waiting)
    leased_until = utcnow() + timedelta(minutes=10)
    batches = {
        state: ProviderBatch(
            provider="openai",
            model=MINI,
            mode="batch",
            state=state,
            request_count=0,
            external_id=f"batch_{state.value}",
            next_poll_at=leased_until,
        )
        for state in (BatchState.pending, BatchState.submitted, BatchState.completed)
    }
    db.add_all(batches.values())
    db.commit()

    assert sweeper.sweep(db, stale_after=stale_after) == {
        "queued_jobs": 0,
        "waiting_jobs": 0,
        "orphaned_jobs": 0,
        "pending_batches": 0,
        "stranded_jobs": 0,
        "unpolled_batches": 0,
        "stranded_followers": 0,
        "escalated_jobs": 0,
    }
    db.rollback()

    counts = sweeper.sweep(db, stale_after=stale_after, redrive=True)
    assert counts == {
        "queued_jobs": 1,
        "waiting_jobs": 1,
        "orphaned_jobs": 0,
        "pending_batches": 1,
        "stranded_jobs": 0,
        "unpolled_batches": 1,
        "stranded_followers": 0,
        "escalated_jobs": 0,
    }
    assert db.info["thrifty_outbox"] == [
        queue.Message(queue.INGEST, ([str(queued.id)],)),
        queue.Message(queue.COLLECT, ()),
        queue.Message(queue.SUBMIT_BATCH, (str(batches[BatchState.pending].id),)),
        queue.Message(queue.POLL_BATCHES, ()),
    ]
    db.commit()
    # The leased batch is handed to a poll at the next tick, not after its lease.
    assert results.dispatch_polls(db) == [batches[BatchState.submitted].id]
    db.rollback()
