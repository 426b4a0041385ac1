"""The batch pipeline against a provider that rate-limits and fails a share of all calls."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy.orm import Session

from app.batching import collector, results, submitter
from app.catalog.catalog import get_catalog
from app.models import BatchState, Job, JobState, Tenant
from app.providers.base import ProviderError
from app.providers.http import RetryPolicy
from app.providers.openai_batch import OpenAIBatchProvider
from tests.factories import make_job
from tests.providers.conftest import Sim, Sleeps

# Half of all calls fail, so a call needs many tries now and then; 20 makes giving up
# vanishingly rare (0.5^20), and the test still copes with it as the worker does.
PATIENT = RetryPolicy(max_attempts=20, initial_wait=0.01, max_wait=0.05)


def test_every_job_completes_once_through_429s_and_500s(
    db: Session, tenant: tuple[Tenant, str], start_simulator: Callable[..., Sim]
) -> None:
    server = start_simulator(
        validating_seconds=0.05,
        processing_seconds=0.2,
        rate_limit_rate=0.3,
        server_error_rate=0.2,
        retry_after_seconds=0.02,
        seed=11,
    )
    catalog = get_catalog()
    for i in range(15):
        make_job(
            db,
            tenant=tenant[0],
            prompt=f"What is the capital of country {i} ({uuid.uuid4().hex[:8]})?",
            state=JobState.waiting,
            routed_ago=timedelta(seconds=30),
        )
    db.commit()
    [batch_id] = collector.collect(db, catalog=catalog)
    db.commit()
    sleeps = Sleeps()
    provider = OpenAIBatchProvider(base_url=server.v1, api_key="k", policy=PATIENT, sleep=sleeps)
    state: BatchState | None = None
    retry_failures: list[bool] = []
    try:
        deadline = time.monotonic() + 30
        while state not in {BatchState.completed, BatchState.failed}:
            assert time.monotonic() < deadline, state
            try:  # as the worker tasks do: a retryable failure is tried again later
                submitter.submit(db, batch_id=batch_id, provider=provider)
                db.commit()
                state = results.poll(db, batch_id=batch_id, provider=provider, catalog=catalog)
                db.commit()
            except ProviderError as exc:
                db.rollback()
                retry_failures.append(exc.retryable)
            time.sleep(0.05)
    finally:
        provider.close()
    assert state == BatchState.completed
    assert all(retry_failures)  # only ever a transient failure, never a refusal
    assert len(sleeps) >= 3  # the injected failures did happen, and were retried
    jobs = db.query(Job).all()
    assert [j.state for j in jobs] == [JobState.completed] * 15
    assert all(j.result and j.output_tokens for j in jobs)
    calls = httpx.get(f"{server.url}/_simulator/calls").json()
    assert calls["POST /v1/batches"] >= 1
    # One provider batch, however many calls failed on the way.
    listing = httpx.get(
        f"{server.v1}/batches", params={"limit": 100}, headers={"Authorization": "Bearer k"}
    )
    while listing.status_code != 200:  # the listing itself may be rate-limited
        listing = httpx.get(
            f"{server.v1}/batches", params={"limit": 100}, headers={"Authorization": "Bearer k"}
        )
    ours = [
        b
        for b in listing.json()["data"]
        if (b.get("metadata") or {}).get("thrifty_batch_id") == str(batch_id)
    ]
    assert len(ours) == 1
