"""POST /v1/jobs and the read endpoints, against the real API, Postgres and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.config import get_settings
from app.kit import queue
from app.models import BatchState, Job, JobState, ProviderBatch, Tenant
from tests.conftest import make_tenant
from tests.factories import make_job


def count_jobs(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(Job)) or 0)


def assert_error(response: httpx.Response, status: int, type_: str | None = None) -> str:
    """The response has ``status`` and the single error schema; returns its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["type"], str)
    assert isinstance(error["message"], str)
    assert error["message"].strip(), "the error message is empty"
    if type_ is not None:
        assert error["type"] == type_, error
    return str(error["message"])


def submit(api: TestClient, body: Any) -> httpx.Response:
    return api.post("/v1/jobs", json=body)


@pytest.fixture
def client_for() -> Iterator[Any]:
    """Build further clients (another tenant, no auth) that are closed after the test."""
    from app.main import app

    clients: list[TestClient] = []

    def build(key: str | None) -> TestClient:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        client = TestClient(app, headers=headers)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


# --- accepted submissions ---------------------------------------------------------------


def test_one_prompt_is_stored_queued_and_readable(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    response = submit(api, {"prompt": "What is the capital of France?"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["group_id"] is None
    assert body["count"] == 1
    assert len(body["jobs"]) == 1
    submitted = body["jobs"][0]
    assert submitted["state"] == "queued"
    assert submitted["existing"] is False
    job_id = uuid.UUID(submitted["id"])

    row = db.get(Job, job_id)
    assert row is not None
    assert row.state == JobState.queued
    assert row.tenant_id == tenant[0].id
    assert row.prompt == "What is the capital of France?"
    assert row.group_id is None
    assert count_jobs(db) == 1

    got = api.get(f"/v1/jobs/{job_id}")
    assert got.status_code == 200, got.text
    job = got.json()
    assert job["id"] == str(job_id)
    assert job["state"] == "queued"
    assert job["group_id"] is None
    assert {"usage", "cost", "timings"} <= set(job)
    assert set(job["usage"]) == {"input_tokens", "output_tokens", "total_tokens"}
    assert set(job["cost"]) == {"cost_usd", "naive_cost_usd", "saved_usd", "savings_usd"}
    assert job["cost"]["savings_usd"] is None  # not ended: no cost record yet
    assert job["timings"]["created_at"] is not None


def test_a_job_that_skips_the_cache_is_routed_when_accepted(
    api: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing to look up: it is routed in the request and waits in its window at once, with
    # no ingest message; the collector is woken instead.
    sent: list[queue.Message] = []

    def record(task: str, *args: object) -> None:
        sent.append(queue.Message(task, args))

    monkeypatch.setattr(queue, "send_now", record)

    response = submit(api, {"prompt": "Who wrote Hamlet?", "tier": "economy", "cache": "bypass"})

    assert response.status_code == 202, response.text
    submitted = response.json()["jobs"][0]
    assert submitted["state"] == "waiting"
    row = db.get(Job, uuid.UUID(submitted["id"]))
    assert row is not None
    assert row.state == JobState.waiting
    assert (row.provider, row.model, row.mode) == ("openai", "gpt-4o-mini", "batch")
    assert row.route_reason is not None
    assert row.routed_at is not None
    assert row.estimated_tokens
    assert row.estimated_bytes
    assert [message.task for message in sent] == [queue.COLLECT]


def test_a_submission_that_fills_its_window_leaves_in_a_batch_at_once(
    api: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[queue.Message] = []

    def record(task: str, *args: object) -> None:
        sent.append(queue.Message(task, args))

    monkeypatch.setattr(queue, "send_now", record)
    size = get_catalog().model("gpt-4o-mini").max_size
    body = [
        {"prompt": f"Question {i}?", "tier": "economy", "cache": "bypass", "priority": i % 2}
        for i in range(size + 3)
    ]

    response = submit(api, body)

    assert response.status_code == 202, response.text
    states = [job["state"] for job in response.json()["jobs"]]
    assert states.count("batched") == size
    assert states.count("waiting") == 3
    (batch,) = db.scalars(select(ProviderBatch)).all()
    assert (batch.state, batch.request_count, batch.model) == (
        BatchState.pending, size, "gpt-4o-mini"
    )  # fmt: skip
    # Higher priority first: the three left to wait are priority 0.
    left = db.scalars(select(Job).where(Job.state == JobState.waiting)).all()
    assert [job.priority for job in left] == [0, 0, 0]
    assert queue.Message(queue.SUBMIT_BATCH, (str(batch.id),)) in sent
    assert queue.Message(queue.COLLECT, ()) in sent


def test_a_window_with_jobs_waiting_is_left_to_the_collector(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    # An earlier job waits in the window: a new submission must not take its turn.
    make_job(db, tenant=tenant[0], state=JobState.waiting, model="gpt-4o-mini")
    db.commit()
    size = get_catalog().model("gpt-4o-mini").max_size
    body = [{"prompt": f"Q {i}?", "tier": "economy", "cache": "bypass"} for i in range(size)]

    response = submit(api, body)

    assert response.status_code == 202, response.text
    assert {job["state"] for job in response.json()["jobs"]} == {"waiting"}
    assert db.scalar(select(func.count()).select_from(ProviderBatch)) == 0


def test_document_without_instruction_defaults_to_summarise(api: TestClient, db: Session) -> None:
    response = submit(api, {"document": "The council met on Tuesday and agreed a budget."})

    assert response.status_code == 202, response.text
    job_id = uuid.UUID(response.json()["jobs"][0]["id"])
    row = db.get(Job, job_id)
    assert row is not None
    assert row.document == "The council met on Tuesday and agreed a budget."
    assert row.instruction == "summarise"
    assert row.prompt is None


def test_list_becomes_a_group_with_counts_and_pages(api: TestClient, db: Session) -> None:
    response = submit(api, [{"prompt": f"question {i}"} for i in range(3)])

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["group_id"] is not None
    assert body["count"] == 3
    ids = {job["id"] for job in body["jobs"]}
    assert len(ids) == 3
    assert count_jobs(db) == 3

    group = api.get(f"/v1/groups/{body['group_id']}")
    assert group.status_code == 200, group.text
    summary = group.json()
    assert summary["size"] == 3
    assert summary["counts"]["queued"] == 3
    assert sum(summary["counts"].values()) == 3
    assert summary["done"] is False

    first = api.get(f"/v1/groups/{body['group_id']}/jobs", params={"limit": 2})
    assert first.status_code == 200, first.text
    page1 = first.json()
    assert len(page1["data"]) == 2
    assert page1["next_after"] is not None

    second = api.get(
        f"/v1/groups/{body['group_id']}/jobs",
        params={"limit": 2, "after": page1["next_after"]},
    )
    assert second.status_code == 200, second.text
    page2 = second.json()
    assert len(page2["data"]) == 1
    assert page2["next_after"] is None

    paged = [job["id"] for job in page1["data"] + page2["data"]]
    assert len(paged) == 3
    assert set(paged) == ids
    assert all(job["group_id"] == body["group_id"] for job in page1["data"] + page2["data"])


def test_ten_thousand_jobs_in_one_request(api: TestClient, db: Session) -> None:
    jobs = [{"prompt": f"q{i}"} for i in range(10_000)]

    response = submit(api, jobs)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["count"] == 10_000
    assert len({job["id"] for job in body["jobs"]}) == 10_000
    assert count_jobs(db) == 10_000


# --- idempotency ------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_existing_job(api: TestClient, db: Session) -> None:
    job = {"prompt": "Translate 'hello' to German.", "idempotency_key": "order-42"}

    first = submit(api, job)
    second = submit(api, job)

    assert first.status_code == 202, first.text
    assert second.status_code == 202, second.text
    one, two = first.json()["jobs"][0], second.json()["jobs"][0]
    assert one["existing"] is False
    assert two["existing"] is True
    assert two["id"] == one["id"]
    assert two["idempotency_key"] == "order-42"
    assert count_jobs(db) == 1


def test_idempotency_keys_are_scoped_per_tenant(
    api: TestClient, db: Session, client_for: Any
) -> None:
    _, other_key = make_tenant(db, name="globex")
    job = {"prompt": "Translate 'hello' to German.", "idempotency_key": "order-42"}

    mine = submit(api, job)
    theirs = submit(client_for(other_key), job)

    assert mine.status_code == 202, mine.text
    assert theirs.status_code == 202, theirs.text
    assert theirs.json()["jobs"][0]["existing"] is False
    assert theirs.json()["jobs"][0]["id"] != mine.json()["jobs"][0]["id"]
    assert count_jobs(db) == 2


def test_key_repeated_within_one_list_is_rejected(api: TestClient, db: Session) -> None:
    jobs = [
        {"prompt": "a", "idempotency_key": "k1"},
        {"prompt": "b", "idempotency_key": "k2"},
        {"prompt": "c", "idempotency_key": "k1"},
    ]

    message = assert_error(submit(api, jobs), 422, "validation_error")

    assert "k1" in message
    assert count_jobs(db) == 0


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "status", "type_", "fragment"),
    [
        ('{"prompt": "unterminated', 400, "bad_request", "malformed JSON"),
        ('"just a string"', 422, "validation_error", "job object"),
        ("42", 422, "validation_error", "job object"),
        ("{}", 422, "validation_error", "prompt"),
        ('{"metadata": {}}', 422, "validation_error", "prompt"),
        ('{"prompt": "p", "document": "d"}', 422, "validation_error", "exactly one"),
        ('{"prompt": "p", "colour": "red"}', 422, "validation_error", "colour"),
        ("[]", 422, "validation_error", "empty"),
        ('{"prompt": "p", "model": "gpt-4o", "tier": "economy"}', 422, "validation_error", "tier"),
        ('{"prompt": "p", "instruction": "tldr"}', 422, "validation_error", "instruction"),
        ('{"prompt": "p", "webhook_url": "not a url"}', 422, "validation_error", "URL"),
        ('{"prompt": "p", "max_output_tokens": 0}', 422, "validation_error", "greater than"),
    ],
    ids=[
        "malformed-json",
        "json-string",
        "json-number",
        "empty-object",
        "metadata-only",
        "prompt-and-document",
        "unknown-field",
        "empty-list",
        "model-and-tier",
        "instruction-with-prompt",
        "bad-webhook-url",
        "zero-max-output-tokens",
    ],
)
def test_bad_input_is_rejected_and_nothing_stored(
    api: TestClient, db: Session, content: str, status: int, type_: str, fragment: str
) -> None:
    response = api.post("/v1/jobs", content=content, headers={"Content-Type": "application/json"})

    message = assert_error(response, status, type_)
    assert fragment.lower() in message.lower(), message
    assert count_jobs(db) == 0


def test_more_than_ten_thousand_jobs_is_rejected(api: TestClient, db: Session) -> None:
    message = assert_error(submit(api, [{"prompt": "q"}] * 10_001), 422, "validation_error")

    assert "10000" in message
    assert count_jobs(db) == 0


def test_over_large_body_is_rejected(
    api: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_body_bytes", 2000)

    message = assert_error(submit(api, {"prompt": "x" * 5000}), 413, "payload_too_large")

    assert "2000" in message
    assert count_jobs(db) == 0


def test_over_large_streamed_body_without_length_is_rejected(
    api: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "max_body_bytes", 2000)
    payload = json.dumps({"prompt": "x" * 5000}).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 512):
            yield payload[start : start + 512]

    response = api.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})

    assert_error(response, 413, "payload_too_large")
    assert count_jobs(db) == 0


def test_one_invalid_job_in_a_list_rejects_the_whole_list(api: TestClient, db: Session) -> None:
    jobs: list[dict[str, Any]] = [{"prompt": f"q{i}"} for i in range(5)]
    jobs[3] = {"prompt": "q3", "document": "d3"}  # the job at index 3 is invalid

    response = submit(api, jobs)

    message = assert_error(response, 422, "validation_error")
    assert "jobs[3]" in message, message
    assert response.json()["error"]["details"][0]["loc"][0] == 3
    assert count_jobs(db) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("model", "gpt-99-ultra"), ("tier", "platinum")],
)
def test_unknown_model_or_tier_names_the_catalog_options(
    api: TestClient, db: Session, field: str, value: str
) -> None:
    catalog = get_catalog()
    options = [m.name for m in catalog.models] if field == "model" else sorted(catalog.tiers)

    message = assert_error(submit(api, {"prompt": "p", field: value}), 422, "validation_error")

    assert value in message
    for option in options:
        assert option in message, message
    assert count_jobs(db) == 0


def test_unknown_hint_in_a_list_stores_nothing(api: TestClient, db: Session) -> None:
    jobs = [{"prompt": "fine"}, {"prompt": "bad", "model": "gpt-99-ultra"}]

    assert_error(submit(api, jobs), 422, "validation_error")

    assert count_jobs(db) == 0


# --- auth, ownership, ids ---------------------------------------------------------------


def test_missing_api_key_is_401(db: Session, client_for: Any) -> None:
    anonymous = client_for(None)

    assert_error(anonymous.post("/v1/jobs", json={"prompt": "p"}), 401, "unauthorized")
    assert_error(anonymous.get(f"/v1/jobs/{uuid.uuid4()}"), 401, "unauthorized")
    assert count_jobs(db) == 0


def test_wrong_api_key_is_401(db: Session, client_for: Any) -> None:
    stranger = client_for("thr_not-a-real-key")

    assert_error(stranger.post("/v1/jobs", json={"prompt": "p"}), 401, "unauthorized")
    assert count_jobs(db) == 0


def test_tenant_cannot_read_another_tenants_job_or_group(
    api: TestClient, db: Session, client_for: Any
) -> None:
    _, other_key = make_tenant(db, name="globex")
    other = client_for(other_key)
    single = submit(other, {"prompt": "theirs"})
    group = submit(other, [{"prompt": "theirs 1"}, {"prompt": "theirs 2"}])
    assert single.status_code == 202, single.text
    assert group.status_code == 202, group.text
    job_id = single.json()["jobs"][0]["id"]
    group_id = group.json()["group_id"]

    assert other.get(f"/v1/jobs/{job_id}").status_code == 200
    assert_error(api.get(f"/v1/jobs/{job_id}"), 404, "not_found")
    assert_error(api.get(f"/v1/groups/{group_id}"), 404, "not_found")
    assert_error(api.get(f"/v1/groups/{group_id}/jobs"), 404, "not_found")


def test_unknown_ids_and_routes(api: TestClient) -> None:
    assert_error(api.get(f"/v1/jobs/{uuid.uuid4()}"), 404, "not_found")
    assert_error(api.get(f"/v1/groups/{uuid.uuid4()}"), 404, "not_found")
    message = assert_error(api.get("/v1/jobs/not-a-uuid"), 422, "validation_error")
    assert "job_id" in message
    assert_error(api.get("/v1/nothing-here"), 404)


# --- OpenAPI ----------------------------------------------------------------------------


def test_openapi_documents_the_jobs_api(api: TestClient) -> None:
    response = api.get("/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    assert "post" in paths["/v1/jobs"]
    assert "get" in paths["/v1/jobs/{job_id}"]
    assert "get" in paths["/v1/groups/{group_id}"]
    properties = schema["components"]["schemas"]["JobIn"]["properties"]
    expected = {
        "prompt",
        "document",
        "instruction",
        "model",
        "tier",
        "metadata",
        "idempotency_key",
        "webhook_url",
    }
    assert expected <= set(properties)
