"""A poison row fails alone, with its reason: ingest isolates it from the rest of its chunk,
and reading or cancelling it never answers 500."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.intake import ingest as intake_ingest
from app.models import Job, JobState, Tenant
from tests.factories import make_job
from tests.jobs.test_submit import assert_error

# 0001-01-01 at +14:00 is 0000-12-31 in UTC: Postgres stores it, Python cannot read it back.
UNREADABLE = "0001-01-01T00:00:00+14:00"


def _poison(db: Session, tenant: Tenant, good: int) -> tuple[Job, list[Job]]:
    jobs = [make_job(db, tenant=tenant) for _ in range(good + 1)]
    db.commit()
    poison = jobs[good // 2]
    db.execute(
        text("UPDATE jobs SET deadline = CAST(:d AS timestamptz) WHERE id = :id"),
        {"d": UNREADABLE, "id": poison.id},
    )
    db.commit()
    db.expunge_all()
    return poison, [j for j in jobs if j.id != poison.id]


def test_the_api_refuses_a_deadline_postgres_cannot_give_back(api: TestClient) -> None:
    response = api.post("/v1/jobs", json={"prompt": "x", "deadline": UNREADABLE})
    assert "deadline" in assert_error(response, 422)
    assert api.get("/healthz").status_code == 200


def test_one_unreadable_row_fails_alone_and_the_rest_of_its_chunk_is_ingested(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    poison, good = _poison(db, tenant[0], good=9)
    handled = intake_ingest.ingest(
        db, job_ids=[j.id for j in [*good, poison]], catalog=get_catalog()
    )
    db.commit()
    assert handled == 10
    states = {row.id: row.state for row in db.execute(select(Job.id, Job.state))}
    assert all(states[j.id] == JobState.waiting for j in good)
    assert states[poison.id] == JobState.failed
    error = db.scalar(select(Job.error).where(Job.id == poison.id))
    assert error is not None
    assert "deadline" in error


def test_reading_and_cancelling_an_unreadable_job_never_answers_500(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    poison, _ = _poison(db, tenant[0], good=1)
    read = api.get(f"/v1/jobs/{poison.id}")
    assert read.status_code == 200, read.text
    assert read.json()["state"] == "failed"
    assert "deadline" in read.json()["error"]
    assert read.json()["deadline"] is None
    assert_error(api.delete(f"/v1/jobs/{poison.id}"), 409)


def test_a_value_postgres_refuses_is_a_422_not_a_500(api: TestClient) -> None:
    response = api.post("/v1/jobs", json={"prompt": "a NUL \u0000 inside"})
    assert_error(response, 422, "validation_error")
    assert api.post("/v1/jobs", json={"prompt": "fine"}).status_code == 202
