"""DELETE /v1/jobs/{id} at every stage, and the batch / realtime / auto modes, through the API,
the real services, Postgres and the simulator over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.batching import collector, results, submitter
from app.catalog.catalog import Catalog, get_catalog
from app.intake import ingest as intake_ingest
from app.models import BatchState, Job, JobState, ProviderBatch, Tenant, utcnow
from app.providers.openai_batch import LIMITS, OpenAIBatchProvider
from app.providers.openai_realtime import OpenAIRealtimeProvider
from app.routing import service as routing_service
from tests.batching.helpers import simulator_requests
from tests.conftest import make_tenant

OPENAI = {"openai": LIMITS}
LATER = timedelta(seconds=5)


@pytest.fixture
def provider(simulator: str) -> Iterator[OpenAIBatchProvider]:
    adapter = OpenAIBatchProvider(base_url=simulator, api_key="t")
    yield adapter
    adapter.close()


def submit(api: TestClient, count: int = 1, **fields: Any) -> list[uuid.UUID]:
    body = [
        {"prompt": f"Explain item {uuid.uuid4().hex[:10]}.", "cache": "bypass", **fields}
        for _ in range(count)
    ]
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return [uuid.UUID(j["id"]) for j in response.json()["jobs"]]


def ingest(db: Session, ids: list[uuid.UUID]) -> None:
    intake_ingest.ingest(db, job_ids=ids, catalog=get_catalog())
    db.commit()


def collect(db: Session) -> list[uuid.UUID]:
    created = collector.collect(db, catalog=get_catalog(), limits=OPENAI, now=utcnow() + LATER)
    db.commit()
    return created


def job(db: Session, job_id: uuid.UUID) -> Job:
    db.expire_all()
    found = db.get(Job, job_id)
    assert found is not None
    return found


def cancel(api: TestClient, job_id: uuid.UUID) -> dict[str, Any]:
    response = api.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["state"] == "cancelled"
    return body


def test_cancel_a_queued_job_before_ingest(api: TestClient, db: Session) -> None:
    (job_id,) = submit(api)
    cancel(api, job_id)
    ingest(db, [job_id])
    assert job(db, job_id).state == JobState.cancelled
    assert job(db, job_id).cancelled_at is not None
    assert collect(db) == []


def test_cancel_a_waiting_job_takes_it_out_of_its_window(api: TestClient, db: Session) -> None:
    ids = submit(api, 3)
    ingest(db, ids)
    assert job(db, ids[0]).state == JobState.waiting
    cancel(api, ids[0])

    (batch_id,) = collect(db)
    batch = db.get(ProviderBatch, batch_id)
    assert batch is not None
    assert batch.request_count == 2
    assert job(db, ids[0]).state == JobState.cancelled
    assert job(db, ids[0]).provider_batch_id is None


def test_cancel_a_claimed_job_before_submission_never_sends_it(
    api: TestClient, db: Session, provider: OpenAIBatchProvider, simulator: str
) -> None:
    ids = submit(api, 2)
    ingest(db, ids)
    (batch_id,) = collect(db)
    cancel(api, ids[0])

    assert submitter.submit(db, batch_id=batch_id, provider=provider)
    db.commit()
    sent = simulator_requests(simulator)
    assert sent[str(ids[1])] == 1
    assert str(ids[0]) not in sent
    assert job(db, ids[0]).state == JobState.cancelled


def test_cancel_after_submission_ignores_the_late_result(
    api: TestClient, db: Session, provider: OpenAIBatchProvider
) -> None:
    ids = submit(api, 2)
    ingest(db, ids)
    (batch_id,) = collect(db)
    assert submitter.submit(db, batch_id=batch_id, provider=provider)
    db.commit()
    cancel(api, ids[0])

    poll_until_ended(db, batch_id, provider)
    cancelled, done = job(db, ids[0]), job(db, ids[1])
    assert cancelled.state == JobState.cancelled
    assert cancelled.result is None
    assert cancelled.cost_usd is None
    assert done.state == JobState.completed
    assert done.result


def test_a_batch_whose_jobs_are_all_cancelled_is_cancelled_at_the_provider(
    api: TestClient, db: Session, provider: OpenAIBatchProvider, provider_http: httpx.Client
) -> None:
    ids = submit(api, 2)
    ingest(db, ids)
    (batch_id,) = collect(db)
    assert submitter.submit(db, batch_id=batch_id, provider=provider)
    db.commit()
    for job_id in ids:
        cancel(api, job_id)

    results.poll(db, batch_id=batch_id, provider=provider, catalog=get_catalog())
    db.commit()
    batch = db.get(ProviderBatch, batch_id)
    assert batch is not None
    assert batch.cancel_requested_at is not None
    remote = provider_http.get(f"batches/{batch.external_id}").json()
    assert remote["status"] in {"cancelling", "cancelled"}

    poll_until_ended(db, batch_id, provider)
    assert {job(db, i).state for i in ids} == {JobState.cancelled}


def test_cancel_a_finished_job_is_a_conflict_and_others_jobs_are_not_found(
    api: TestClient, db: Session
) -> None:
    (job_id,) = submit(api)
    cancel(api, job_id)
    again = api.delete(f"/v1/jobs/{job_id}")
    assert again.status_code == 409
    assert again.json()["error"]["type"]
    assert api.delete(f"/v1/jobs/{uuid.uuid4()}").status_code == 404
    _, other_key = make_tenant(db, name="other")
    foreign = api.delete(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {other_key}"})
    assert foreign.status_code == 404


def poll_until_ended(db: Session, batch_id: uuid.UUID, provider: OpenAIBatchProvider) -> None:
    deadline = time.monotonic() + 20
    while True:
        state = results.poll(db, batch_id=batch_id, provider=provider, catalog=get_catalog())
        db.commit()
        if state in {BatchState.completed, BatchState.failed}:
            return
        assert time.monotonic() < deadline, f"batch still {state}"
        time.sleep(0.1)


# --- modes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "deadline_in", "expected"),
    [
        ("batch", None, "batch"),
        ("batch", timedelta(minutes=5), "batch"),
        ("realtime", None, "realtime"),
        ("auto", None, "batch"),
        ("auto", timedelta(hours=48), "batch"),
        ("auto", timedelta(hours=1), "flex"),  # inside the batch window, past flex's
        ("auto", timedelta(minutes=5), "realtime"),  # inside flex's expected latency
        ("flex", None, "flex"),
    ],
)
def test_choose_mode(requested: str, deadline_in: timedelta | None, expected: str) -> None:
    catalog = get_catalog()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    deadline = now + deadline_in if deadline_in else None
    mode, reason = routing_service.choose_mode(
        catalog, model="gpt-5-nano", requested=requested, deadline=deadline, now=now
    )
    assert mode == expected
    assert reason


def test_auto_without_batch_api_or_realtime_api_falls_back() -> None:
    catalog: Catalog = get_catalog()
    realtime_only = catalog.model_copy(
        update={
            "providers": {
                **catalog.providers,
                "openai": catalog.providers["openai"].model_copy(
                    update={"kind": "openai_realtime"}
                ),
            }
        }
    )
    now = utcnow()
    assert (
        routing_service.choose_mode(
            realtime_only, model="gpt-4o-mini", requested="batch", deadline=None, now=now
        )[0]
        == "realtime"
    )


def test_modes_through_the_api_realtime_jobs_complete_as_concurrent_calls(
    api: TestClient, db: Session, simulator: str
) -> None:
    soon = (utcnow() + timedelta(minutes=10)).isoformat()
    later = (utcnow() + timedelta(days=3)).isoformat()
    realtime_ids = submit(api, 3, mode="realtime")
    urgent_ids = submit(api, 2, mode="auto", deadline=soon, priority=5)
    relaxed_ids = submit(api, 1, mode="auto", deadline=later)
    ingest(db, realtime_ids + urgent_ids + relaxed_ids)

    for job_id in realtime_ids + urgent_ids:
        assert job(db, job_id).mode == "realtime"
        assert "realtime" in (job(db, job_id).route_reason or "")
    assert job(db, relaxed_ids[0]).mode == "batch"
    assert job(db, urgent_ids[0]).priority == 5
    body = api.get(f"/v1/jobs/{urgent_ids[0]}").json()
    assert body["requested_mode"] == "auto"
    assert body["priority"] == 5
    assert body["deadline"] is not None

    created = collect(db)
    modes = {db.get(ProviderBatch, b).mode: b for b in created}  # type: ignore[union-attr]
    assert set(modes) == {"realtime", "batch"}
    realtime = OpenAIRealtimeProvider(base_url=simulator, api_key="t")
    try:
        assert submitter.run_realtime(
            db,
            batch_id=modes["realtime"],
            provider=realtime,
            concurrency=4,
            catalog=get_catalog(),
        )
        db.commit()
    finally:
        realtime.close()
    for job_id in realtime_ids + urgent_ids:
        done = job(db, job_id)
        assert done.state == JobState.completed, done.error
        assert done.result
        assert done.cost_usd is not None
    batch = db.get(ProviderBatch, modes["realtime"])
    assert batch is not None
    assert batch.state == BatchState.completed
    # A second delivery of the same message does nothing.
    assert not submitter.run_realtime(
        db, batch_id=modes["realtime"], provider=realtime, concurrency=4, catalog=get_catalog()
    )


def test_a_deadline_needs_a_time_zone(api: TestClient, tenant: tuple[Tenant, str]) -> None:
    response = api.post("/v1/jobs", json={"prompt": "hi", "deadline": "2030-01-01T00:00:00"})
    assert response.status_code == 422
    response = api.post("/v1/jobs", json={"prompt": "hi", "mode": "sometimes"})
    assert response.status_code == 422
