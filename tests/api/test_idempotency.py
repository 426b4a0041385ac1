"""Stripe's idempotency semantics for jobs and lists; one webhook subscription per URL."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Job


def jobs_stored(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Job)) or 0


def test_same_key_same_payload_returns_the_original(api: TestClient, db: Session) -> None:
    job = {"prompt": "Hi", "idempotency_key": "k1", "metadata": {"a": 1, "b": 2}}
    first = api.post("/v1/jobs", json=job).json()["jobs"][0]
    # The same payload, its object keys in another order and a default spelled out.
    again = api.post(
        "/v1/jobs",
        json={"idempotency_key": "k1", "metadata": {"b": 2, "a": 1}, "prompt": "Hi", "priority": 0},
    )
    assert again.status_code == 202, again.text
    assert again.json()["jobs"][0] == {**first, "existing": True}
    assert jobs_stored(db) == 1


def test_same_key_other_payload_is_409(api: TestClient, db: Session) -> None:
    api.post("/v1/jobs", json={"prompt": "Hi", "idempotency_key": "k1"})
    for other in (
        {"prompt": "Hello", "idempotency_key": "k1"},
        {"prompt": "Hi", "idempotency_key": "k1", "metadata": {"x": 1}},
        {"prompt": "Hi", "idempotency_key": "k1", "tier": "economy"},
    ):
        response = api.post("/v1/jobs", json=other)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["type"] == "idempotency_conflict"
        assert "k1" in error["message"]
        # In a list too.
        listed = api.post("/v1/jobs", json=[other, {"prompt": "new"}])
        assert listed.status_code == 409
        assert listed.json()["error"]["type"] == "idempotency_conflict"
    assert jobs_stored(db) == 1


def test_a_list_sent_again_returns_its_group(api: TestClient, db: Session) -> None:
    jobs = [{"prompt": f"q{i}", "idempotency_key": f"k{i}"} for i in range(3)]
    first = api.post("/v1/jobs", json=jobs).json()
    again = api.post("/v1/jobs", json=jobs)
    assert again.status_code == 202
    body = again.json()
    assert body["group_id"] == first["group_id"]
    assert [j["id"] for j in body["jobs"]] == [j["id"] for j in first["jobs"]]
    assert all(j["existing"] for j in body["jobs"])
    group = api.get(f"/v1/groups/{body['group_id']}").json()
    assert body["count"] == group["size"] == 3
    assert jobs_stored(db) == 3


def test_a_list_mixing_stored_and_new_jobs_is_409(api: TestClient, db: Session) -> None:
    # The reported case: a reply said count 2 while its group had size 1.
    api.post("/v1/jobs", json={"prompt": "a", "idempotency_key": "ka"})
    mixed = api.post("/v1/jobs", json=[{"prompt": "a", "idempotency_key": "ka"}, {"prompt": "b"}])
    assert mixed.status_code == 409
    assert mixed.json()["error"]["type"] == "idempotency_conflict"
    # Part of an earlier list, sent as a shorter list: another request.
    api.post(
        "/v1/jobs",
        json=[{"prompt": "c", "idempotency_key": "kc"}, {"prompt": "d", "idempotency_key": "kd"}],
    )
    part = api.post("/v1/jobs", json=[{"prompt": "c", "idempotency_key": "kc"}])
    assert part.status_code == 409
    assert jobs_stored(db) == 3
    # Every group answered has as many jobs as its answer counts.
    fresh = api.post("/v1/jobs", json=[{"prompt": "e"}, {"prompt": "f", "idempotency_key": "kf"}])
    body = fresh.json()
    assert body["count"] == api.get(f"/v1/groups/{body['group_id']}").json()["size"] == 2


def test_one_subscription_per_url(api: TestClient) -> None:
    url = "http://127.0.0.1:9/hook"
    first = api.post("/v1/webhooks/endpoints", json={"url": url})
    assert first.status_code == 201
    second = api.post("/v1/webhooks/endpoints", json={"url": url, "events": ["job.failed"]})
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["type"] == "conflict"
    assert first.json()["id"] in error["message"]
    assert len(api.get("/v1/webhooks/endpoints").json()) == 1
    # Deleted, it can be registered again.
    assert api.delete(f"/v1/webhooks/endpoints/{first.json()['id']}").status_code == 204
    assert api.post("/v1/webhooks/endpoints", json={"url": url}).status_code == 201
