"""Windows (size, tokens, bytes, priority), retries of failed and expired requests, 429s and
per-batch poll backoff, against real Postgres and simulators over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.batching import collector, results, submitter, windows
from app.catalog.catalog import Catalog, get_catalog
from app.kit import queue
from app.models import BatchState, Job, JobMode, JobState, ProviderBatch, Tenant, utcnow
from app.providers.base import ProviderError, ProviderLimits
from app.providers.http import RetryPolicy
from app.providers.openai_batch import LIMITS, OpenAIBatchProvider
from app.providers.openai_realtime import OpenAIRealtimeProvider
from app.stack.processes import Supervisor
from tests.batching.helpers import (
    MINI,
    assert_all_terminal,
    simulator_requests,
    start_simulator,
    stop,
    waiting_jobs,
    with_models,
)

OPENAI = {"openai": LIMITS}


def batches(db: Session) -> list[ProviderBatch]:
    db.expire_all()
    return list(db.scalars(select(ProviderBatch).order_by(ProviderBatch.created_at)))


def drive(
    db: Session,
    *,
    catalog: Catalog,
    provider: OpenAIBatchProvider,
    realtime: OpenAIRealtimeProvider | None = None,
    job_ids: list[uuid.UUID],
    timeout: float = 60,
) -> None:
    """Run collect → submit → poll (as the worker would) until every job has ended."""
    deadline = time.monotonic() + timeout
    while True:
        created = collector.collect(db, catalog=catalog, limits=OPENAI, now=utcnow() + timedelta(1))
        db.commit()
        for batch_id in created:
            batch = db.get(ProviderBatch, batch_id)
            assert batch is not None
            if batch.mode == JobMode.realtime:
                assert realtime is not None
                submitter.run_realtime(
                    db, batch_id=batch_id, provider=realtime, concurrency=4, catalog=catalog
                )
            else:
                submitter.submit(db, batch_id=batch_id, provider=provider)
            db.commit()
        for batch_id in results.dispatch_polls(db, now=utcnow() + timedelta(hours=1)):
            results.poll(db, batch_id=batch_id, provider=provider, catalog=catalog)
            db.commit()
        db.expire_all()
        rows = db.scalars(select(Job.state).where(Job.id.in_(job_ids))).all()
        if all(s in {JobState.completed, JobState.failed, JobState.cancelled} for s in rows):
            return
        assert time.monotonic() < deadline, "jobs did not end"
        time.sleep(0.1)


# --- windows -----------------------------------------------------------------------------


def test_a_window_flushes_when_its_estimated_tokens_reach_max_tokens(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    catalog = with_models(get_catalog(), max_tokens=35, max_wait_seconds=3600)
    jobs = waiting_jobs(db, tenant[0], 7)  # 10 estimated tokens each
    now = utcnow()  # not due: only the token cap can flush it

    created = collector.collect(db, catalog=catalog, limits=OPENAI, now=now)
    db.commit()

    # 70 tokens: two batches of 3 jobs (30 tokens); 10 tokens stay below the cap and wait.
    assert sorted(b.request_count for b in batches(db)) == [3, 3]
    assert len(created) == 2
    left = db.scalars(select(Job.id).where(Job.state == JobState.waiting)).all()
    assert len(left) == 1
    assert left[0] in {j.id for j in jobs}


def test_a_window_never_exceeds_the_provider_byte_limit(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    catalog = with_models(get_catalog(), max_wait_seconds=3600)
    waiting_jobs(db, tenant[0], 10)  # 500 estimated bytes each
    small = {"openai": ProviderLimits(max_requests=50_000, max_bytes=1_600)}

    collector.collect(db, catalog=catalog, limits=small, now=utcnow())
    db.commit()

    # Full by bytes: three jobs (1,500 bytes) a batch, the last one waits for its window.
    assert [b.request_count for b in batches(db)] == [3, 3, 3]
    for batch in batches(db):
        members = db.scalars(select(Job).where(Job.provider_batch_id == batch.id)).all()
        assert sum(j.estimated_bytes or 0 for j in members) <= 1_600


def test_higher_priority_jobs_leave_the_window_first(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    catalog = with_models(get_catalog(), max_size=2)
    jobs = waiting_jobs(db, tenant[0], 5)
    jobs[3].priority, jobs[4].priority = 5, 9
    db.commit()

    collector.collect(db, catalog=catalog, limits=OPENAI)
    db.commit()

    first = batches(db)[0]
    members = {j.id for j in db.scalars(select(Job).where(Job.provider_batch_id == first.id))}
    assert members == {jobs[3].id, jobs[4].id}


def test_a_claimed_batch_over_the_provider_limit_sends_what_fits(
    db: Session, tenant: tuple[Tenant, str], simulator: str, provider_http: httpx.Client
) -> None:
    catalog = get_catalog()
    jobs = waiting_jobs(db, tenant[0], 6)
    for job in jobs:
        job.estimated_bytes = 1  # an estimate far too low
    db.commit()
    (batch_id,) = collector.collect(db, catalog=catalog, limits=OPENAI)
    db.commit()
    tight = ProviderLimits(max_requests=4, max_bytes=LIMITS.max_bytes)
    provider = OpenAIBatchProvider(base_url=simulator, api_key="t", limits=tight)
    try:
        assert submitter.submit(db, batch_id=batch_id, provider=provider)
        db.commit()
    finally:
        provider.close()

    batch = db.get(ProviderBatch, batch_id)
    assert batch is not None
    assert batch.state == BatchState.submitted
    assert batch.request_count == 4
    counts = {state: 0 for state in JobState}
    for job in jobs:
        db.refresh(job)
        counts[job.state] += 1
    assert counts[JobState.submitted] == 4
    assert counts[JobState.waiting] == 2  # back in the window for the next batch


# --- outcomes through the simulator -------------------------------------------------------


@pytest.fixture
def expiring(supervisor: Supervisor) -> Iterator[str]:
    """A simulator whose batches expire before they finish."""
    name = f"sim-expiring-{uuid.uuid4().hex[:6]}"
    yield start_simulator(
        supervisor, name, "--validating-seconds", "0", "--processing-seconds", "30",
        "--expire-after-seconds", "0.3",
    )  # fmt: skip
    stop(supervisor, name)


@pytest.fixture
def flaky(supervisor: Supervisor) -> Iterator[str]:
    """A simulator that fails a share of requests with a 400."""
    name = f"sim-flaky-{uuid.uuid4().hex[:6]}"
    yield start_simulator(
        supervisor, name, "--validating-seconds", "0", "--processing-seconds", "0.2",
        "--error-rate", "0.4",
    )  # fmt: skip
    stop(supervisor, name)


def test_expired_requests_are_retried_up_to_max_attempts_then_fail_with_the_reason(
    db: Session, tenant: tuple[Tenant, str], expiring: str
) -> None:
    catalog = with_models(get_catalog(), max_attempts=3)
    jobs = waiting_jobs(db, tenant[0], 4)
    ids = [j.id for j in jobs]
    provider = OpenAIBatchProvider(base_url=expiring, api_key="t")
    try:
        drive(db, catalog=catalog, provider=provider, job_ids=ids)
    finally:
        provider.close()

    assert set(assert_all_terminal(db, ids).values()) == {JobState.failed}
    for job in jobs:
        db.refresh(job)
        assert job.attempts == 2  # two retries after the first expiry, then the third ends it
        assert job.error is not None
        assert "batch_expired" in job.error
    # Three batches, each holding every job once: no request was in two live batches.
    assert [b.state for b in batches(db)] == [BatchState.failed] * 3
    sent = simulator_requests(expiring)
    assert {uuid.UUID(i) for i in sent} == set(ids)
    assert set(sent.values()) == {3}


def test_expired_requests_go_realtime_when_the_policy_says_so(
    db: Session, tenant: tuple[Tenant, str], expiring: str
) -> None:
    catalog = with_models(get_catalog(), on_expiry="realtime")
    jobs = waiting_jobs(db, tenant[0], 3)
    ids = [j.id for j in jobs]
    provider = OpenAIBatchProvider(base_url=expiring, api_key="t")
    realtime = OpenAIRealtimeProvider(base_url=expiring, api_key="t")
    try:
        drive(db, catalog=catalog, provider=provider, realtime=realtime, job_ids=ids)
    finally:
        provider.close()
        realtime.close()

    assert set(assert_all_terminal(db, ids).values()) == {JobState.completed}
    model = catalog.model(MINI)
    for job in jobs:
        db.refresh(job)
        assert job.mode == "realtime"
        assert job.attempts == 1
        assert job.result
        assert job.input_tokens
        assert job.output_tokens
        # Realtime pays list price: no batch discount.
        list_cost = (
            job.input_tokens * model.input_per_mtok + job.output_tokens * model.output_per_mtok
        ) / 1_000_000
        assert job.cost_usd is not None
        assert abs(job.cost_usd - list_cost) < Decimal("1e-7")
    assert [b.mode for b in batches(db)] == ["batch", "realtime"]


def test_a_partial_failure_fails_only_the_failed_requests_with_the_providers_reason(
    db: Session, tenant: tuple[Tenant, str], flaky: str
) -> None:
    catalog = get_catalog()
    jobs = waiting_jobs(db, tenant[0], 20)
    ids = [j.id for j in jobs]
    provider = OpenAIBatchProvider(base_url=flaky, api_key="t")
    try:
        drive(db, catalog=catalog, provider=provider, job_ids=ids)
    finally:
        provider.close()

    found = assert_all_terminal(db, ids)
    assert set(found.values()) == {JobState.completed, JobState.failed}
    for job in jobs:
        db.refresh(job)
        if job.state == JobState.failed:
            assert job.error is not None
            assert "provider error" in job.error
            assert "invalid_request_error" in job.error
            assert job.result is None
            assert job.cost_usd is None
        else:
            assert job.result
            assert job.cost_usd is not None
        assert job.attempts == 0  # a 400 is not worth retrying
    # Each request was sent once, in the one batch.
    sent = simulator_requests(flaky)
    assert {uuid.UUID(i) for i in sent} == set(ids)
    assert set(sent.values()) == {1}


def test_429s_on_submit_leave_the_batch_pending_and_a_later_submit_sends_it_once(
    db: Session, tenant: tuple[Tenant, str], supervisor: Supervisor
) -> None:
    name = f"sim-429-{uuid.uuid4().hex[:6]}"
    base = start_simulator(supervisor, name, "--validating-seconds", "0",
                           "--processing-seconds", "0.2")  # fmt: skip
    catalog = get_catalog()
    jobs = waiting_jobs(db, tenant[0], 3)
    ids = [j.id for j in jobs]
    control = httpx.Client(base_url=base.removesuffix("/v1"))
    provider = OpenAIBatchProvider(
        base_url=base,
        api_key="t",
        policy=RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01),
    )
    try:
        files_429 = {"status": 429, "count": 2, "path_prefix": "/v1/files"}
        control.post("/_simulator/faults", json=files_429).raise_for_status()
        (batch_id,) = collector.collect(db, catalog=catalog, limits=OPENAI)
        db.commit()
        with pytest.raises(ProviderError) as refused:
            submitter.submit(db, batch_id=batch_id, provider=provider)
        assert refused.value.retryable
        db.rollback()
        batch = db.get(ProviderBatch, batch_id)
        assert batch is not None
        assert batch.state == BatchState.pending

        # The next attempt (the task's retry, or the sweeper) goes through.
        assert submitter.submit(db, batch_id=batch_id, provider=provider)
        db.commit()

        # A 429 while polling backs this batch off instead of failing it.
        batches_429 = {"status": 429, "count": 2, "path_prefix": "/v1/batches/"}
        control.post("/_simulator/faults", json=batches_429).raise_for_status()
        state = results.poll(
            db, batch_id=batch_id, provider=provider, catalog=catalog, backoff=(5.0, 60.0)
        )
        db.commit()
        assert state == BatchState.submitted
        db.refresh(batch)
        assert batch.polls == 1
        assert batch.next_poll_at is not None
        assert batch.next_poll_at > utcnow()
        assert batch_id not in results.dispatch_polls(db)  # backing off
        assert batch_id in results.dispatch_polls(db, now=utcnow() + timedelta(seconds=6))

        drive(db, catalog=catalog, provider=provider, job_ids=ids)
    finally:
        provider.close()
        control.close()
        stop(supervisor, name)
    assert set(assert_all_terminal(db, ids).values()) == {JobState.completed}
    db.refresh(batch)
    assert batch.polls >= 2


def test_poll_backoff_doubles_up_to_the_cap() -> None:
    delays = [results.poll_delay(n, base=2, cap=60).total_seconds() for n in range(1, 8)]
    assert delays == [2, 4, 8, 16, 32, 60, 60]


def test_a_batch_handed_to_a_poll_task_is_not_handed_out_again_until_its_lease_ends(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    batch = ProviderBatch(provider="openai", model=MINI, mode="batch", request_count=1)
    batch.state, batch.external_id = BatchState.submitted, f"batch_{uuid.uuid4().hex}"
    db.add(batch)
    db.commit()

    now = utcnow()
    assert results.dispatch_polls(db, now=now) == [batch.id]
    assert queue.Message(queue.POLL_BATCH, (str(batch.id),)) in db.info["thrifty_outbox"]
    db.commit()
    # The next beat tick, while that poll waits in the queue, hands out nothing.
    assert results.dispatch_polls(db, now=now + timedelta(seconds=1)) == []
    # A lost poll message costs one lease.
    later = now + results.POLL_LEASE + timedelta(seconds=1)
    assert results.dispatch_polls(db, now=later) == [batch.id]
    db.rollback()


def test_collect_can_stop_after_a_number_of_batches(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    waiting_jobs(db, tenant[0], 6)
    catalog = with_models(get_catalog(), max_size=2)

    first = collector.collect(db, catalog=catalog, limits=OPENAI, max_batches=1)
    db.commit()
    rest = collector.collect(db, catalog=catalog, limits=OPENAI)
    db.commit()

    assert len(first) == 1
    assert len(rest) == 2
    assert [b.request_count for b in batches(db)] == [2, 2, 2]


def test_a_batch_takes_the_longest_prefix_under_both_caps_and_an_oversized_job_alone() -> None:
    estimates: list[tuple[int | None, int | None]] = [(10, 100), (10, 100), (10, 100)]
    assert windows.fitting_prefix(estimates, max_tokens=25, max_bytes=1000) == (2, 20, 200)
    assert windows.fitting_prefix(estimates, max_tokens=100, max_bytes=250) == (2, 20, 200)
    assert windows.fitting_prefix([(50, 10), (1, 1)], max_tokens=10, max_bytes=100) == (
        1, 50, 10
    )  # fmt: skip
    assert windows.fitting_prefix([(None, None)], max_tokens=1, max_bytes=1) == (1, 0, 0)
