"""Provider per-request failures end up on their jobs, with the provider's own message."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from app.batching import collector, results, submitter
from app.catalog.catalog import get_catalog
from app.models import BatchState, Job, JobState, Tenant
from app.providers.openai_batch import OpenAIBatchProvider
from tests.factories import make_job
from tests.providers.conftest import FAST, Sim, Sleeps


def _run(db: Session, tenant: Tenant, server: Sim, size: int) -> BatchState:
    """Collect ``size`` due jobs into one batch, submit it to ``server`` and poll it to the end."""
    catalog = get_catalog()
    for i in range(size):
        make_job(
            db,
            tenant=tenant,
            prompt=f"What is the capital of country {i} ({uuid.uuid4().hex[:8]})?",
            state=JobState.waiting,
            routed_ago=timedelta(seconds=30),
        )
    db.commit()
    [batch_id] = collector.collect(db, catalog=catalog)
    db.commit()
    provider = OpenAIBatchProvider(base_url=server.v1, api_key="k", policy=FAST, sleep=Sleeps())
    try:
        assert submitter.submit(db, batch_id=batch_id, provider=provider)
        db.commit()
        deadline = time.monotonic() + 15
        while True:
            state = results.poll(db, batch_id=batch_id, provider=provider, catalog=catalog)
            db.commit()
            if state in {BatchState.completed, BatchState.failed}:
                return state
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
    finally:
        provider.close()


def test_per_line_errors_fail_only_their_jobs_with_the_providers_message(
    db: Session, tenant: tuple[Tenant, str], start_simulator: Callable[..., Sim]
) -> None:
    server = start_simulator(validating_seconds=0.05, processing_seconds=0.1, error_rate=0.5)
    state = _run(db, tenant[0], server, size=12)
    assert state == BatchState.completed
    jobs = db.query(Job).all()
    failed = [j for j in jobs if j.state == JobState.failed]
    completed = [j for j in jobs if j.state == JobState.completed]
    assert failed
    assert completed
    for job in failed:
        assert job.result is None
        assert job.error is not None
        assert "simulated invalid_request_error" in job.error
    assert all(j.result and j.input_tokens for j in completed)


def test_expired_lines_fail_their_jobs_as_batch_expired(
    db: Session, tenant: tuple[Tenant, str], start_simulator: Callable[..., Sim]
) -> None:
    server = start_simulator(
        validating_seconds=0.05, processing_seconds=2.0, expire_after_seconds=0.6
    )
    state = _run(db, tenant[0], server, size=20)
    jobs = db.query(Job).all()
    expired = [j for j in jobs if j.state != JobState.completed]
    assert state == BatchState.failed  # the batch as a whole expired
    assert expired
    assert any(j.state == JobState.completed for j in jobs)
    # Each expired request carries the provider's reason; the batching service retries it
    # (back to a window) or fails it once it has used its attempts.
    for job in expired:
        assert job.state in {JobState.waiting, JobState.failed}
        assert "batch_expired" in (job.error or "")
