"""A job driven through the API, a real Celery worker process and the simulator over HTTP."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.models import BatchState, Job, JobState, ProviderBatch, Tenant
from tests.conftest import make_tenant

pytestmark = pytest.mark.usefixtures("worker")

DOC = (
    "Engineers in the town of Millbrook finished repairing the river wall on Friday, three weeks "
    "ahead of schedule. The wall was breached in March when heavy rain raised the river by two "
    "metres. Repairs cost 1.2 million pounds, paid from the regional flood fund. Shop owners on "
    "the quay said trade had already begun to recover. The council will inspect the wall again "
    "in the autumn."
)


def wait_for(
    client: TestClient,
    path: str,
    done: Any,
    *,
    timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(path, headers=headers).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting on {path}: {body}")
        time.sleep(0.2)


def test_one_document_goes_through_the_whole_pipeline(api: TestClient) -> None:
    response = api.post("/v1/jobs", json={"document": DOC, "metadata": {"ref": "m-1"}})
    assert response.status_code == 202
    job_id = response.json()["jobs"][0]["id"]

    job = wait_for(api, f"/v1/jobs/{job_id}", lambda b: b["state"] == "completed")

    assert job["model"] == "gpt-4o-mini"
    assert job["mode"] == "batch"
    assert "Millbrook" in job["result"]
    assert job["usage"]["input_tokens"] > 50
    assert 0 < job["usage"]["output_tokens"] < job["usage"]["input_tokens"]
    cost, naive = Decimal(job["cost"]["cost_usd"]), Decimal(job["cost"]["naive_cost_usd"])
    assert 0 < cost < naive
    assert job["metadata"] == {"ref": "m-1"}
    timings = job["timings"]
    assert timings["created_at"] <= timings["routed_at"] <= timings["submitted_at"]
    assert timings["submitted_at"] <= timings["completed_at"]


def test_a_bulk_group_completes_in_few_batches_and_repeats_hit_the_cache(
    api: TestClient, db: Session
) -> None:
    docs = [f"{DOC} This is report number {i} of the series." for i in range(60)]
    response = api.post("/v1/jobs", json=[{"document": d} for d in docs])
    assert response.status_code == 202
    group_id = response.json()["group_id"]

    group = wait_for(api, f"/v1/groups/{group_id}", lambda b: b["done"])
    assert group["counts"]["completed"] == 60
    assert group["cache_hits"] == 0
    assert Decimal(group["cost"]["cost_usd"]) < Decimal(group["cost"]["naive_cost_usd"])
    # Every job was in exactly one provider batch, and the batches were few.
    assert db.scalar(select(func.count()).select_from(ProviderBatch)) <= 3
    assert db.scalar(select(func.count()).where(Job.provider_batch_id.is_(None))) == 0

    # The same documents again (reformatted whitespace): answered from the exact cache.
    again = api.post("/v1/jobs", json=[{"document": "  " + d.replace(" ", "  ")} for d in docs[:5]])
    regroup = wait_for(api, f"/v1/groups/{again.json()['group_id']}", lambda b: b["done"])
    assert regroup["cache_hits"] == 5
    assert Decimal(regroup["cost"]["cost_usd"]) == 0
    assert Decimal(regroup["cost"]["saved_usd"]) > 0
    first = api.get(f"/v1/groups/{again.json()['group_id']}/jobs").json()["data"][0]
    assert first["cache_hit"] is True
    assert first["cached_from_job_id"] is not None


def test_a_bulk_submission_that_fills_a_window_goes_through_as_one_batch(
    api: TestClient, db: Session
) -> None:
    size = get_catalog().model("gpt-4o-mini").max_size
    body = [{"prompt": f"Bulk question {i}?", "tier": "economy", "cache": "bypass"}
            for i in range(size)]  # fmt: skip
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202
    assert {job["state"] for job in response.json()["jobs"]} == {"batched"}

    group = wait_for(api, f"/v1/groups/{response.json()['group_id']}", lambda b: b["done"])
    assert group["counts"]["completed"] == size
    (batch,) = db.scalars(select(ProviderBatch)).all()
    assert (batch.state, batch.request_count) == (BatchState.completed, size)


def test_the_cache_never_crosses_tenants(api: TestClient, db: Session) -> None:
    response = api.post("/v1/jobs", json={"prompt": "What is the capital of France?"})
    wait_for(
        api, f"/v1/jobs/{response.json()['jobs'][0]['id']}", lambda b: b["state"] == "completed"
    )

    _, other_key = make_tenant(db, name="other")
    headers = {"Authorization": f"Bearer {other_key}"}
    other = api.post("/v1/jobs", json={"prompt": "What is the capital of France?"}, headers=headers)
    job = wait_for(
        api,
        f"/v1/jobs/{other.json()['jobs'][0]['id']}",
        lambda b: b["state"] == "completed",
        headers=headers,
    )
    assert job["cache_hit"] is False


def test_the_sweeper_redrives_jobs_whose_message_was_lost(
    db: Session, tenant: tuple[Tenant, str], api: TestClient
) -> None:
    # Rows committed without any broker message, as if Redis lost it.
    from tests.factories import make_job

    jobs = [make_job(db, tenant=tenant[0], prompt=f"lost question {i}") for i in range(3)]
    db.execute(update(Job).values(updated_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 1)))
    db.commit()
    for job in jobs:
        body = wait_for(api, f"/v1/jobs/{job.id}", lambda b: b["state"] == "completed")
        assert body["result"]
    states = db.scalars(select(Job.state).where(Job.id.in_([j.id for j in jobs])))
    assert set(states) == {JobState.completed}
