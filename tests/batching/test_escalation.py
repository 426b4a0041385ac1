"""Deadline escalation through the simulator over HTTP: a batch the provider is slow with (the
simulator's ``--processing-seconds``) is still running when its jobs near their deadline; the
sweeper sends them again on a faster path before the deadline, their late batch answers are
ignored when they arrive (recorded as superseded in the ledger, nothing completed or billed
twice), and the escalation's cost is the job's cost in the ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.batching import results, submitter, sweeper
from app.catalog.catalog import get_catalog
from app.ledger import service as ledger_service
from app.models import (
    BatchState,
    CostRecord,
    Job,
    JobMode,
    JobState,
    ProviderBatch,
    SupersededLine,
)
from app.providers.openai_batch import OpenAIBatchProvider
from app.providers.openai_realtime import OpenAIRealtimeProvider
from app.stack.processes import Supervisor
from tests.batching.helpers import eventually, start_simulator, stop
from tests.batching.test_cancel_and_modes import collect, job, submit
from tests.batching.test_flex import run_flex

MINI = "gpt-4o-mini"  # not served on flex
FLEX = "gpt-5-nano"  # served on flex
SLOW = "simulator-slow-batches"


@pytest.fixture(scope="module")
def slow(supervisor: Supervisor) -> Iterator[str]:
    """A simulator whose batches stay in progress for a while (the provider is late); its
    realtime and flex calls answer at once."""
    url = start_simulator(
        supervisor, SLOW, "--validating-seconds", "0.1", "--processing-seconds", "4"
    )
    yield url
    stop(supervisor, SLOW)


@pytest.fixture
def batch_api(slow: str) -> Iterator[OpenAIBatchProvider]:
    adapter = OpenAIBatchProvider(base_url=slow, api_key="t")
    yield adapter
    adapter.close()


def batch_jobs(
    api: TestClient, db: Session, *, deadline_in: timedelta | None, count: int, model: str = MINI
) -> list[uuid.UUID]:
    fields = {"mode": "batch", "model": model}
    if deadline_in is not None:
        fields["deadline"] = (datetime.now(UTC) + deadline_in).isoformat()
    return submit(api, count, **fields)


def paid(done: Job, mode: JobMode) -> object:
    usage = ledger_service.TokenUsage(
        input_tokens=done.input_tokens or 0, output_tokens=done.output_tokens or 0
    )
    return ledger_service.paid_price(get_catalog().model(done.model or ""), mode, usage)


def records(db: Session, job_id: uuid.UUID) -> list[CostRecord]:
    return list(db.scalars(select(CostRecord).where(CostRecord.job_id == job_id)))


def test_a_late_batch_is_escalated_before_the_deadline_and_its_late_answer_ignored(
    api: TestClient, db: Session, slow: str, batch_api: OpenAIBatchProvider
) -> None:
    catalog = get_catalog()
    margin = catalog.providers["openai"].escalation_margin_seconds
    # Deadlines inside the margin (and too soon for flex's latency): due for escalation as
    # long as their batch has not ended; the third job has no deadline and stays.
    late = batch_jobs(api, db, deadline_in=timedelta(seconds=margin / 3), count=2)
    (patient,) = batch_jobs(api, db, deadline_in=None, count=1)
    (batch_id,) = collect(db)
    assert submitter.submit(db, batch_id=batch_id, provider=batch_api, attempt=1, catalog=catalog)
    db.commit()

    # The provider has not finished: the batch is still running at the simulator.
    assert results.poll(db, batch_id=batch_id, provider=batch_api, catalog=catalog) == (
        BatchState.submitted
    )
    db.commit()
    found = sweeper.sweep(db, stale_after=timedelta(hours=1), catalog=catalog)
    db.commit()
    assert found["escalated_jobs"] == 2
    for job_id in late:
        escalated = job(db, job_id)
        assert (escalated.state, escalated.mode) == (JobState.waiting, JobMode.realtime)
        assert escalated.provider_batch_id is None
        record = (escalated.routing or {})["escalation"]
        assert record["from_batch"] == str(batch_id)
        assert (record["from_mode"], record["mode"]) == ("batch", "realtime")
        assert datetime.fromisoformat(record["at"]) < escalated.deadline  # type: ignore[operator]
        assert "escalated to realtime" in (escalated.route_reason or "")
        assert "escalated to realtime" in api.get(f"/v1/jobs/{job_id}").json()["route_reason"]
    assert job(db, patient).state == JobState.submitted
    # A second sweep finds nothing more to escalate.
    assert sweeper.sweep(db, stale_after=timedelta(hours=1), catalog=catalog)["escalated_jobs"] == 0
    db.commit()

    # The escalation: a realtime batch, sent and completed at list price before the deadline.
    (realtime_batch,) = collect(db)
    realtime = OpenAIRealtimeProvider(base_url=slow, api_key="t")
    try:
        assert submitter.run_realtime(
            db, batch_id=realtime_batch, provider=realtime, concurrency=2, catalog=catalog
        )
        db.commit()
    finally:
        realtime.close()
    answers = {}
    for job_id in late:
        done = job(db, job_id)
        assert done.state == JobState.completed, done.error
        assert done.completed_at < done.deadline  # type: ignore[operator]
        assert done.cost_usd == paid(done, JobMode.realtime)
        (cost,) = records(db, job_id)
        assert (cost.mode, cost.actual_usd) == ("realtime", done.cost_usd)
        answers[job_id] = (done.result, done.cost_usd, done.completed_at, done.provider_batch_id)

    # The late batch ends; its lines for the escalated jobs are ignored, the patient job's
    # line completes it at the batch discount.
    def ended() -> bool:
        state = results.poll(db, batch_id=batch_id, provider=batch_api, catalog=catalog)
        db.commit()
        return state == BatchState.completed

    eventually(ended, timeout=60, what="the slow batch to end")
    done = job(db, patient)
    assert done.state == JobState.completed
    assert done.cost_usd == paid(done, JobMode.batch)
    for job_id in late:
        again = job(db, job_id)
        assert (again.result, again.cost_usd, again.completed_at, again.provider_batch_id) == (
            answers[job_id]
        )
        assert len(records(db, job_id)) == 1  # billed once
    lines = {line.job_id: line for line in db.scalars(select(SupersededLine))}
    assert set(lines) == set(late)
    for line in lines.values():
        assert line.provider_batch_id == batch_id
        assert line.mode == "batch"
        usage = ledger_service.TokenUsage(
            input_tokens=line.input_tokens, output_tokens=line.output_tokens
        )
        expected = ledger_service.paid_price(catalog.model(MINI), JobMode.batch, usage)
        assert line.cost_usd == expected > 0
    assert ledger_service.superseded_usd(db, job_ids=late) == {
        job_id: line.cost_usd for job_id, line in lines.items()
    }
    # Applying the batch's results again records nothing new.
    batch = db.get(ProviderBatch, batch_id)
    assert batch is not None
    status = batch_api.retrieve(batch.external_id or "")
    results.apply_outcomes(
        db, batch=batch, results=batch_api.results(status), status=status, catalog=catalog
    )
    db.commit()
    assert db.scalar(select(func.count()).select_from(SupersededLine)) == 2
    assert db.scalar(select(func.count()).select_from(CostRecord)) == 3


def test_a_job_of_a_pending_batch_escalates_to_flex_when_its_deadline_allows(
    api: TestClient, db: Session, slow: str
) -> None:
    catalog = get_catalog()
    config = catalog.providers["openai"]
    # Inside the margin, but with room for flex's expected latency.
    left = (config.escalation_margin_seconds + config.flex_latency_seconds) / 2
    assert config.flex_latency_seconds < left < config.escalation_margin_seconds
    (job_id,) = batch_jobs(api, db, deadline_in=timedelta(seconds=left), count=1, model=FLEX)
    (batch_id,) = collect(db)  # pending: the batch has not even left
    assert sweeper.sweep(db, stale_after=timedelta(hours=1), catalog=catalog)["escalated_jobs"] == 1
    db.commit()
    escalated = job(db, job_id)
    assert (escalated.state, escalated.mode) == (JobState.waiting, JobMode.flex)
    assert "escalated to flex" in (escalated.route_reason or "")
    # The pending batch is left with nothing to send: it fails without calling the provider.
    batch_api = OpenAIBatchProvider(base_url=slow, api_key="t")
    try:
        assert submitter.submit(db, batch_id=batch_id, provider=batch_api, attempt=1)
        db.commit()
    finally:
        batch_api.close()
    batch = db.get(ProviderBatch, batch_id)
    assert batch is not None
    assert batch.state == BatchState.failed
    assert batch.external_id is None
    (flex_batch,) = collect(db)
    run_flex(db, flex_batch, flex_url=slow, realtime_url=slow)
    done = job(db, job_id)
    assert done.state == JobState.completed, done.error
    assert done.mode == JobMode.flex
    assert done.cost_usd == paid(done, JobMode.flex)
    assert db.scalar(select(func.count()).select_from(SupersededLine)) == 0


def test_a_late_anthropic_job_escalates_down_its_fallback_chain(
    api: TestClient, db: Session
) -> None:
    """Anthropic is reached by batch only: the faster path is the first model of the job's
    fallback chain on a provider with a realtime path."""
    catalog = get_catalog()
    haiku = "claude-haiku-4-5"
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    (job_id,) = submit(api, 1, mode="batch", model=haiku, deadline=soon)
    assert job(db, job_id).provider == "anthropic"
    collect(db)
    assert sweeper.sweep(db, stale_after=timedelta(hours=1), catalog=catalog)["escalated_jobs"] == 1
    db.commit()
    escalated = job(db, job_id)
    (step,) = catalog.model(haiku).fallbacks
    assert (escalated.provider, escalated.model, escalated.mode) == (
        catalog.model(step).provider,
        step,
        JobMode.realtime,
    )
    assert f"on {step}, next in {haiku}'s chain" in (escalated.route_reason or "")
