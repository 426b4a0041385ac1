"""Deliveries to a real HTTP receiver: signatures, retries, 410, timeouts, SSRF, redelivery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from sqlalchemy.orm import Session

from app.delivery import service as delivery_service
from app.delivery.addresses import Policy
from app.jobs import events as job_events
from app.metrics import build_registry
from app.models import DeliveryState, JobState, Tenant, WebhookEndpoint, utcnow
from tests.delivery.conftest import webhook_config
from tests.delivery.helpers import attempt, attempts, deliveries, finish, make_group
from tests.delivery.receiver import Receiver, Reply
from tests.factories import make_job

CONFIG = webhook_config()


def register(
    api: TestClient, receiver: Receiver, path: str = "/hook", **body: object
) -> dict[str, str]:
    """An endpoint for ``path`` of the receiver, whose secret the receiver verifies with."""
    response = api.post("/v1/webhooks/endpoints", json={"url": receiver.url(path), **body})
    assert response.status_code == 201, response.text
    created: dict[str, str] = response.json()
    receiver.secrets.setdefault(path, []).append(created["secret"])
    return created


def test_a_job_event_is_signed_and_verifies(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver, events=["job.completed"])
    job = finish(db, tenant=tenant[0], config=CONFIG)
    (delivery,) = deliveries(db)
    assert delivery.event == "job.completed"
    assert delivery.state == DeliveryState.pending

    assert attempt(db, delivery, config=CONFIG) == DeliveryState.succeeded
    (got,) = receiver.received()
    assert got.verified_with == receiver.secrets["/hook"]
    assert got.headers["webhook-id"] == delivery.message_id
    assert got.headers["content-type"] == "application/json"
    payload = got.payload
    assert payload["type"] == "job.completed"
    assert payload["result_omitted"] is False
    assert payload["url"].endswith(f"/v1/jobs/{job.id}")
    # The data is the job as the API returns it.
    data = payload["data"]
    assert data == api.get(f"/v1/jobs/{job.id}").json()
    assert data["state"] == "completed"
    assert data["result"] == "Repairs finished early."
    assert data["usage"] == {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    (row,) = attempts(db, delivery.id)
    assert (row.number, row.status_code, row.error, row.address) == (1, 200, None, "127.0.0.1")
    assert row.duration_ms >= 0
    # A second call for the same jobs records nothing new; a finished delivery is not retried.
    assert job_events.jobs_finished(db, job_ids=[job.id], config=CONFIG) == []
    assert attempt(db, delivery, config=CONFIG) is None


def test_a_jobs_own_webhook_url_is_signed_with_the_tenant_secret(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    finish(db, tenant=tenant[0], state=JobState.failed, webhook_url=receiver.url("/mine"),
           config=CONFIG)  # fmt: skip
    receiver.secrets["/mine"] = [api.get("/v1/webhooks/secret").json()["secret"]]
    (delivery,) = deliveries(db)
    assert delivery.endpoint_id is None
    assert delivery.event == "job.failed"
    assert attempt(db, delivery, config=CONFIG) == DeliveryState.succeeded
    (got,) = receiver.received("/mine")
    assert got.verified_with
    assert got.payload["data"]["error"] == "provider error: boom"


def test_only_subscribed_events_are_delivered(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver, "/failed", events=["job.failed"])
    register(api, receiver, "/all")
    finish(db, tenant=tenant[0], config=CONFIG)
    finish(db, tenant=tenant[0], state=JobState.failed, config=CONFIG)
    events = sorted((d.url.rsplit("/", 1)[1], d.event) for d in deliveries(db))
    assert events == [("all", "job.completed"), ("all", "job.failed"), ("failed", "job.failed")]


def test_a_failure_is_retried_on_the_schedule_with_jitter(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver)
    receiver.script["/hook"] = [Reply(500), Reply(503)]
    finish(db, tenant=tenant[0], config=CONFIG)
    (delivery,) = deliveries(db)

    assert attempt(db, delivery, config=CONFIG) == DeliveryState.pending
    assert attempt(db, delivery, config=CONFIG, due=False) is None  # not due yet
    assert attempt(db, delivery, config=CONFIG) == DeliveryState.pending
    assert attempt(db, delivery, config=CONFIG) == DeliveryState.succeeded

    rows = attempts(db, delivery.id)
    assert [(r.number, r.status_code) for r in rows] == [(1, 500), (2, 503), (3, 200)]
    assert rows[0].error == "receiver answered 500"
    # Schedule (0, 2, 4) with 20 % jitter: 2 s after attempt 1, 4 s after attempt 2.
    for row, base in ((rows[0], 2), (rows[1], 4)):
        assert row.next_attempt_at is not None
        waited = (row.next_attempt_at - row.started_at).total_seconds()
        assert base * 0.8 <= waited <= base * 1.2
    assert rows[2].next_attempt_at is None
    # Every attempt carried the same id and body, each verified.
    got = receiver.received()
    assert len({r.headers["webhook-id"] for r in got}) == 1
    assert len({r.body for r in got}) == 1
    assert all(r.verified_with for r in got)
    (final,) = deliveries(db)
    assert final.attempt_count == 3
    assert final.delivered_at is not None


def test_retry_after_is_honoured(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver)
    receiver.script["/hook"] = [Reply(429, {"Retry-After": "120"})]
    finish(db, tenant=tenant[0], config=CONFIG)
    (delivery,) = deliveries(db)
    assert attempt(db, delivery, config=CONFIG) == DeliveryState.pending
    (row,) = attempts(db, delivery.id)
    assert row.next_attempt_at is not None
    assert (row.next_attempt_at - row.started_at).total_seconds() == pytest.approx(120)
    # Capped by configuration.
    receiver.script["/hook"] = [Reply(503, {"Retry-After": "999999"})]
    capped = webhook_config(max_retry_after_seconds=600)
    assert attempt(db, delivery, config=capped) == DeliveryState.pending
    row = attempts(db, delivery.id)[1]
    assert row.next_attempt_at is not None
    assert (row.next_attempt_at - row.started_at).total_seconds() == pytest.approx(600)


def test_dead_lettered_after_the_last_attempt_then_redelivered_through_the_api(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver)
    receiver.script["/hook"] = [Reply(500)] * 3
    config = webhook_config(max_attempts=3)
    finish(db, tenant=tenant[0], config=config)
    (delivery,) = deliveries(db)
    for _ in range(2):
        assert attempt(db, delivery, config=config) == DeliveryState.pending
    assert attempt(db, delivery, config=config) == DeliveryState.dead
    (dead,) = deliveries(db)
    assert dead.next_attempt_at is None
    assert "dead-lettered after 3 attempts" in str(dead.last_error)
    assert attempts(db, delivery.id)[-1].next_attempt_at is None
    assert (
        'thrifty_webhook_deliveries{state="dead"} 1.0' in generate_latest(build_registry()).decode()
    )

    listed = api.get("/v1/webhooks/deliveries", params={"status": "dead"}).json()
    assert [d["id"] for d in listed["data"]] == [str(delivery.id)]
    assert api.get("/v1/webhooks/deliveries", params={"status": "succeeded"}).json()["data"] == []
    detail = api.get(f"/v1/webhooks/deliveries/{delivery.id}").json()
    assert [a["status_code"] for a in detail["attempts"]] == [500, 500, 500]

    response = api.post(f"/v1/webhooks/deliveries/{delivery.id}/redeliver")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "pending"
    assert response.json()["attempt_count"] == 0
    assert attempt(db, delivery, config=config) == DeliveryState.succeeded
    assert [a.number for a in attempts(db, delivery.id)] == [1, 2, 3, 4]
    assert len({r.headers["webhook-id"] for r in receiver.received()}) == 1
    assert all(r.verified_with for r in receiver.received())


def test_410_gone_disables_the_endpoint(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    endpoint = register(api, receiver)
    receiver.script["/hook"] = [Reply(410)]
    finish(db, tenant=tenant[0], config=CONFIG)
    finish(db, tenant=tenant[0], config=CONFIG)
    first, second = deliveries(db)
    assert attempt(db, first, config=CONFIG) == DeliveryState.dead
    # The other pending delivery is dead-lettered without a request, and no new ones are made.
    assert {d.state for d in deliveries(db)} == {DeliveryState.dead}
    assert attempts(db, second.id) == []
    finish(db, tenant=tenant[0], config=CONFIG)
    assert len(deliveries(db)) == 2
    state = api.get(f"/v1/webhooks/endpoints/{endpoint['id']}").json()
    assert state["disabled_at"] is not None
    assert "410" in state["disabled_reason"]
    assert len(receiver.received()) == 1
    assert "thrifty_webhook_endpoints_disabled 1.0" in generate_latest(build_registry()).decode()

    conflict = api.post(f"/v1/webhooks/deliveries/{second.id}/redeliver")
    assert conflict.status_code == 409, conflict.text
    assert api.post(f"/v1/webhooks/endpoints/{endpoint['id']}/enable").status_code == 200
    assert api.post(f"/v1/webhooks/deliveries/{second.id}/redeliver").status_code == 202
    assert attempt(db, second, config=CONFIG) == DeliveryState.succeeded


def test_a_receiver_slower_than_the_timeout_fails_the_attempt(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver)
    receiver.script["/hook"] = [Reply(200, delay=2.0)]
    finish(db, tenant=tenant[0], config=CONFIG)
    (delivery,) = deliveries(db)
    assert attempt(db, delivery, config=webhook_config(timeout_seconds=0.3)) == (
        DeliveryState.pending
    )
    (row,) = attempts(db, delivery.id)
    assert row.status_code is None
    assert "timed out" in str(row.error)
    assert row.next_attempt_at is not None
    assert attempt(db, delivery, config=CONFIG) == DeliveryState.succeeded


def test_ssrf_is_checked_again_at_delivery_time(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    # Registered while loopback was allowed; refused once it no longer is.
    register(api, receiver, path="/hook")
    response = api.post("/v1/webhooks/endpoints", json={"url": receiver.url(host="localhost")})
    receiver.secrets["/hook"].append(response.json()["secret"])
    finish(db, tenant=tenant[0], config=CONFIG)
    strict = webhook_config(policy=Policy())
    for delivery in deliveries(db):
        assert attempt(db, delivery, config=strict) == DeliveryState.pending
        (row,) = attempts(db, delivery.id)
        assert row.error is not None
        assert row.error.startswith("refused:")
        assert "loopback" in row.error
        assert row.address is None
    assert receiver.received() == []
    private_only = webhook_config(policy=Policy(allow_private=True))
    for delivery in deliveries(db):
        assert attempt(db, delivery, config=private_only) == DeliveryState.succeeded
    # The name was resolved, checked and connected to by address, with its Host kept.
    hosts = sorted(r.headers["host"] for r in receiver.received())
    assert hosts == [f"127.0.0.1:{receiver.port}", f"localhost:{receiver.port}"]
    assert all(r.verified_with for r in receiver.received())


def test_rotation_signs_with_both_secrets_during_the_grace_period(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    endpoint = register(api, receiver)
    rotated = api.post(f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret").json()
    receiver.secrets["/hook"].append(rotated["secret"])
    finish(db, tenant=tenant[0], config=CONFIG)
    (delivery,) = deliveries(db)
    assert attempt(db, delivery, config=CONFIG) == DeliveryState.succeeded
    (got,) = receiver.received()
    assert len(got.signatures) == 2
    assert got.verified_with == [endpoint["secret"], rotated["secret"]]

    # After the grace period only the new secret signs.
    stored = db.get(WebhookEndpoint, delivery.endpoint_id)
    assert stored is not None
    stored.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    finish(db, tenant=tenant[0], config=CONFIG)
    assert attempt(db, deliveries(db)[1], config=CONFIG) == DeliveryState.succeeded
    latest = receiver.received()[1]
    assert len(latest.signatures) == 1
    assert latest.verified_with == [rotated["secret"]]


def test_large_results_are_referenced_by_url(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver)
    config = webhook_config(max_inline_result_bytes=100)
    job = finish(db, tenant=tenant[0], result="word " * 100, config=config)
    (delivery,) = deliveries(db)
    assert len(delivery.body) < 1000
    assert attempt(db, delivery, config=config) == DeliveryState.succeeded
    payload = receiver.received()[0].payload
    assert payload["data"]["result"] is None
    assert payload["result_omitted"] is True
    assert payload["url"] == f"{config.public_base_url}/v1/jobs/{job.id}"
    fetched = api.get(payload["url"].removeprefix(config.public_base_url)).json()
    assert fetched["result"] == "word " * 100
    assert {**fetched, "result": None} == payload["data"]


def test_group_completed_is_sent_once_when_the_last_job_ends(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver, events=["group.completed"])
    group = make_group(db, tenant=tenant[0], size=2)
    running = make_job(db, tenant=tenant[0], state=JobState.submitted)
    running.group_id = group.id
    db.commit()
    finish(db, tenant=tenant[0], group=group, config=CONFIG)
    assert deliveries(db) == []
    last = finish(db, tenant=tenant[0], job=running, state=JobState.failed, config=CONFIG)
    assert job_events.jobs_finished(db, job_ids=[last.id], config=CONFIG) == []
    (delivery,) = deliveries(db)
    assert delivery.event == "group.completed"
    assert delivery.group_id == group.id
    assert attempt(db, delivery, config=CONFIG) == DeliveryState.succeeded
    payload = receiver.received()[0].payload
    # The data is the group as the API returns it.
    assert payload["data"] == api.get(f"/v1/groups/{group.id}").json()
    assert payload["data"]["done"] is True
    assert {state: n for state, n in payload["data"]["counts"].items() if n} == {
        "completed": 1,
        "failed": 1,
    }
    assert payload["url"].endswith(f"/v1/groups/{group.id}")
    assert payload["results_url"].endswith(f"/v1/groups/{group.id}/results")


def test_a_lost_hint_is_resent_by_the_dispatcher(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver)
    finish(db, tenant=tenant[0], config=CONFIG)
    (delivery,) = deliveries(db)
    stale = timedelta(seconds=30)
    # The hint sent at creation is fresh: nothing to do yet.
    assert delivery_service.dispatch_due(db, stale_after=stale) == []
    later = utcnow() + timedelta(seconds=31)
    assert delivery_service.dispatch_due(db, stale_after=stale, now=later) == [delivery.id]
    db.commit()
    # Once re-sent, it is not sent again until that hint is stale too.
    assert delivery_service.dispatch_due(db, stale_after=stale, now=later) == []
    # A failed attempt clears the hint: the retry is dispatched as soon as it is due.
    receiver.script["/hook"] = [Reply(500)]
    assert attempt(db, delivery, config=CONFIG) == DeliveryState.pending
    (row,) = attempts(db, delivery.id)
    assert row.next_attempt_at is not None
    due = row.next_attempt_at + timedelta(milliseconds=1)
    assert delivery_service.dispatch_due(db, stale_after=stale, now=due) == [delivery.id]
    db.rollback()


def test_many_deliveries_at_once_are_left_to_the_dispatcher(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], receiver: Receiver
) -> None:
    register(api, receiver, events=["job.completed"])
    jobs = [make_job(db, tenant=tenant[0], state=JobState.submitted) for _ in range(25)]
    for job in jobs:
        job.state, job.result = JobState.completed, "ok"
    db.flush()
    ids = job_events.jobs_finished(db, job_ids=[j.id for j in jobs], config=CONFIG)
    db.commit()
    assert len(ids) == 25
    assert all(d.enqueued_at is None for d in deliveries(db))
    # The dispatcher, woken once, hints every one of them at once.
    assert sorted(delivery_service.dispatch_due(db, stale_after=timedelta(seconds=30))) == sorted(
        ids
    )
    db.commit()


def test_jobs_nobody_listens_to_load_no_rows(db: Session, tenant: tuple[Tenant, str]) -> None:
    from sqlalchemy import event

    jobs = [make_job(db, tenant=tenant[0], state=JobState.submitted) for _ in range(50)]
    for job in jobs:
        job.state, job.result = JobState.completed, "ok"
    db.commit()
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert job_events.jobs_finished(db, job_ids=[j.id for j in jobs], config=CONFIG) == []
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    # The tenants of the jobs (an aggregate), then their endpoints: no job row is read.
    assert len(statements) == 2, statements
    assert "bool_or" in statements[0]
    assert "webhook_endpoints" in statements[1]
    db.rollback()
