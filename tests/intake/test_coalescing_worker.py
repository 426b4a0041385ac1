"""Coalescing end to end: the API in this process, a real Celery worker and the simulator."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import TERMINAL_STATES, Job, JobState
from tests.batching.helpers import eventually, simulator_requests

pytestmark = pytest.mark.usefixtures("worker")


def submit(api: TestClient, prompts: list[str]) -> list[uuid.UUID]:
    response = api.post("/v1/jobs", json=[{"prompt": p, "model": "gpt-4o-mini"} for p in prompts])
    assert response.status_code == 202, response.text
    return [uuid.UUID(job["id"]) for job in response.json()["jobs"]]


def test_identical_requests_reach_the_simulator_once_and_every_follower_completes(
    db: Session, api: TestClient, simulator: str
) -> None:
    # Exact keys are what coalescing compares: no embedder is loaded for the semantic layer.
    assert api.put("/v1/cache/settings", json={"semantic_enabled": False}).status_code == 200
    texts = [f"Which planet is number {n} from the sun?" for n in range(1, 5)]
    ids = submit(api, texts * 2) + submit(api, texts[::-1])

    def ended() -> bool:
        db.expire_all()
        found = db.scalars(select(Job.state).where(Job.id.in_(ids))).all()
        return all(state in TERMINAL_STATES for state in found)

    eventually(ended, timeout=90, what="every job ended")
    db.expire_all()
    rows = {job.id: job for job in db.scalars(select(Job).where(Job.id.in_(ids)))}
    assert {job.state for job in rows.values()} == {JobState.completed}
    sent = simulator_requests(simulator)
    reached = {rows[i].prompt for i in ids if sent[str(i)]}
    assert reached == set(texts)
    assert sum(sent[str(i)] for i in ids) == len(texts)  # each distinct text once
    followers = [job for job in rows.values() if job.coalesced_with is not None]
    assert len(followers) == len(ids) - len(texts)
    for follower in followers:
        leader = rows[follower.coalesced_with]
        assert sent[str(leader.id)] == 1
        assert follower.result == leader.result
        assert follower.cost_usd == 0
