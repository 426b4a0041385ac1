"""Webhooks end to end: jobs through the API, a real Celery worker (with beat) and the
simulator, to signed deliveries at a real receiver."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.models import DeliveryState, Tenant, WebhookDelivery, utcnow
from tests.delivery.helpers import attempts, deliveries
from tests.delivery.receiver import Receiver, Reply

pytestmark = pytest.mark.usefixtures("worker")

DOC = (
    "The council of Millbrook voted on Tuesday to reopen the old library as a community "
    "centre. Work starts in spring and is paid for by a regional grant. Residents asked for "
    "longer opening hours and a children's corner, and the council agreed to both."
)


def test_a_group_is_delivered_signed_through_the_worker(
    api: TestClient, db: Session, receiver: Receiver
) -> None:
    endpoint = api.post("/v1/webhooks/endpoints", json={"url": receiver.url("/endpoint")}).json()
    receiver.secrets["/endpoint"] = [endpoint["secret"]]
    receiver.secrets["/job"] = [api.get("/v1/webhooks/secret").json()["secret"]]
    # The endpoint fails once: the retry comes from the schedule, driven by beat.
    receiver.script["/endpoint"] = [Reply(500)]

    jobs = [{"document": f"{DOC} Item {i}.", "webhook_url": receiver.url("/job")} for i in range(2)]
    response = api.post("/v1/jobs", json=jobs)
    assert response.status_code == 202, response.text
    group_id = response.json()["group_id"]
    job_ids = {job["id"] for job in response.json()["jobs"]}

    own = receiver.wait_for(2, "/job")
    assert {r.payload["data"]["id"] for r in own} == job_ids
    assert all(r.payload["type"] == "job.completed" for r in own)
    assert all("Millbrook" in r.payload["data"]["result"] for r in own)
    # 1 failed + 2 job.completed + 1 group.completed, the retry ~5 s later.
    at_endpoint = receiver.wait_for(4, "/endpoint", timeout=90)
    assert all(r.verified_with for r in receiver.received())
    events = sorted(r.payload["type"] for r in at_endpoint)
    assert events.count("group.completed") == 1
    assert events.count("job.completed") == 3
    group_event = next(r for r in at_endpoint if r.payload["type"] == "group.completed")
    assert group_event.payload["data"]["id"] == group_id
    counts = group_event.payload["data"]["counts"]
    assert {state: n for state, n in counts.items() if n} == {"completed": 2}

    deadline = time.monotonic() + 30
    while any(d.state != DeliveryState.succeeded for d in deliveries(db)):
        assert time.monotonic() < deadline, [(d.event, d.state) for d in deliveries(db)]
        time.sleep(0.1)
    assert len(deliveries(db)) == 5
    retried = [d for d in deliveries(db) if d.attempt_count == 2]
    assert len(retried) == 1
    first, second = attempts(db, retried[0].id)
    assert first.status_code == 500
    assert second.status_code == 200
    assert first.next_attempt_at is not None
    assert 4 <= (first.next_attempt_at - first.started_at).total_seconds() <= 6


def test_a_delivery_whose_message_was_lost_is_still_delivered(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    endpoint = api.post("/v1/webhooks/endpoints", json={"url": receiver.url("/lost")}).json()
    receiver.secrets["/lost"] = [endpoint["secret"]]
    # A delivery row that no message was ever sent for: beat's dispatcher must find it.
    delivery = WebhookDelivery(
        tenant_id=tenant[0].id,
        endpoint_id=uuid.UUID(endpoint["id"]),
        event="job.completed",
        dedup_key=f"test:{uuid.uuid4()}",
        message_id="msg_" + uuid.uuid4().hex,
        url=receiver.url("/lost"),
        body='{"type":"job.completed","data":{}}',
        next_attempt_at=utcnow(),
    )
    db.add(delivery)
    db.commit()
    (got,) = receiver.wait_for(1, "/lost", timeout=30)
    assert got.verified_with
    assert got.headers["webhook-id"] == delivery.message_id


def test_a_cache_hit_at_ingest_is_delivered_too(api: TestClient, receiver: Receiver) -> None:
    receiver.secrets["/job"] = [api.get("/v1/webhooks/secret").json()["secret"]]
    job = {"document": DOC, "webhook_url": receiver.url("/job")}
    first = api.post("/v1/jobs", json=job).json()["jobs"][0]["id"]
    receiver.wait_for(1, "/job")
    repeat = api.post("/v1/jobs", json=job).json()["jobs"][0]["id"]
    got = receiver.wait_for(2, "/job")
    data = {r.payload["data"]["id"]: r.payload["data"] for r in got}
    assert data[first]["cache_hit"] is False
    assert data[repeat]["cache_hit"] is True
    assert data[repeat]["result"] == data[first]["result"]
    assert all(r.verified_with for r in got)
