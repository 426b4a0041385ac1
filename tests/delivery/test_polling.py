"""Polling: Retry-After while running, a group's results as pages and as a JSONL stream, and
cancelling a group."""

from __future__ import annotations

import json
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.jobs import transitions
from app.models import DeliveryState, Job, JobState, WebhookDelivery, utcnow
from tests.jobs.test_submit import assert_error


def submit_group(api: TestClient, n: int) -> tuple[str, list[str]]:
    response = api.post("/v1/jobs", json=[{"prompt": f"question {i}"} for i in range(n)])
    assert response.status_code == 202, response.text
    body = response.json()
    return body["group_id"], [job["id"] for job in body["jobs"]]


def complete(db: Session, ids: list[str]) -> None:
    db.execute(
        update(Job)
        .where(Job.id.in_([uuid.UUID(i) for i in ids]))
        .values(state=JobState.completed, result="answer", completed_at=Job.created_at)
    )
    db.commit()


def test_retry_after_is_sent_while_running_only(api: TestClient, db: Session) -> None:
    group_id, ids = submit_group(api, 3)
    wait = str(get_settings().poll_retry_after_seconds)
    for path in (f"/v1/jobs/{ids[0]}", f"/v1/groups/{group_id}", f"/v1/groups/{group_id}/jobs",
                 f"/v1/groups/{group_id}/results"):  # fmt: skip
        assert api.get(path).headers.get("retry-after") == wait, path
    complete(db, ids)
    for path in (f"/v1/jobs/{ids[0]}", f"/v1/groups/{group_id}", f"/v1/groups/{group_id}/jobs",
                 f"/v1/groups/{group_id}/results"):  # fmt: skip
        response = api.get(path)
        assert response.status_code == 200, path
        assert "retry-after" not in response.headers, path


def test_group_results_as_pages_and_as_a_jsonl_stream(api: TestClient, db: Session) -> None:
    group_id, ids = submit_group(api, 25)
    complete(db, ids[:20])

    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 10}
        if after:
            params["after"] = after
        page = api.get(f"/v1/groups/{group_id}/jobs", params=params).json()
        seen += [job["id"] for job in page["data"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(ids)

    response = api.get(f"/v1/groups/{group_id}/results")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [job["id"] for job in lines] == sorted(ids)
    assert sum(job["state"] == "completed" and job["result"] == "answer" for job in lines) == 20
    assert {job["group_id"] for job in lines} == {group_id}


def test_the_stream_reads_in_pages(api: TestClient, db: Session) -> None:
    from app.jobs import service as job_service

    group_id, ids = submit_group(api, 7)
    lines = list(job_service.iter_group_results(db, group_id=uuid.UUID(group_id), page=3))
    assert [json.loads(line)["id"] for line in lines] == sorted(ids)


def test_another_tenants_group_is_not_found(api: TestClient) -> None:
    missing = uuid.uuid4()
    assert_error(api.get(f"/v1/groups/{missing}/results"), 404, "not_found")
    assert_error(api.post(f"/v1/groups/{missing}/cancel"), 404, "not_found")


def test_cancelling_a_group_cancels_its_unfinished_jobs(api: TestClient, db: Session) -> None:
    created = api.post(
        "/v1/webhooks/endpoints",
        json={"url": "http://127.0.0.1:9/hook", "events": ["group.completed", "job.completed"]},
    )
    assert created.status_code == 201
    group_id, ids = submit_group(api, 5)
    complete(db, ids[:2])
    db.execute(update(Job).where(Job.id == uuid.UUID(ids[2])).values(state=JobState.waiting))
    db.commit()

    response = api.post(f"/v1/groups/{group_id}/cancel")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cancelled"] == 3
    assert body["group"]["done"] is True
    assert body["group"]["counts"]["completed"] == 2
    assert body["group"]["counts"]["cancelled"] == 3
    db.expire_all()
    states = {str(job.id): job.state for job in db.scalars(select(Job))}
    assert [states[i] for i in ids] == [JobState.completed] * 2 + [JobState.cancelled] * 3
    cancelled_at = {str(job.id): job.cancelled_at for job in db.scalars(select(Job))}
    assert all(cancelled_at[i] is not None for i in ids[2:])
    assert all(cancelled_at[i] is None for i in ids[:2])
    # Finished jobs keep their results; the group's completion is announced once.
    (delivery,) = db.scalars(select(WebhookDelivery)).all()
    assert delivery.event == "group.completed"
    assert delivery.state == DeliveryState.pending
    counts = json.loads(delivery.body)["data"]["counts"]
    assert {state: n for state, n in counts.items() if n} == {"completed": 2, "cancelled": 3}

    again = api.post(f"/v1/groups/{group_id}/cancel").json()
    assert again["cancelled"] == 0
    assert len(db.scalars(select(WebhookDelivery)).all()) == 1


def test_a_cancelled_job_is_not_completed_by_a_late_result(api: TestClient, db: Session) -> None:
    group_id, ids = submit_group(api, 1)
    db.execute(update(Job).where(Job.id == uuid.UUID(ids[0])).values(state=JobState.submitted))
    db.commit()
    assert api.post(f"/v1/groups/{group_id}/cancel").json()["cancelled"] == 1
    late = transitions.JobOutcome(
        job_id=uuid.UUID(ids[0]),
        state=JobState.completed,
        result="late",
        error=None,
        input_tokens=1,
        output_tokens=1,
        cached_input_tokens=0,
        cache_write_tokens=0,
        costs=None,
        completed_at=utcnow(),
    )
    transitions.apply_results(db, [late], from_state=JobState.submitted)
    db.commit()
    assert api.get(f"/v1/jobs/{ids[0]}").json()["state"] == "cancelled"
