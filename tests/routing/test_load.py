"""Queue limits: a model whose Batch API queue (OpenAI's enqueued tokens per model) cannot
take a job spills it to the next model of its chain with room, at submission and at ingest,
and says so; the queue frees as its jobs end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.batching import collector
from app.catalog.catalog import Catalog, get_catalog
from app.intake import ingest as intake_ingest
from app.models import Job, JobState, utcnow
from tests.batching.test_cancel_and_modes import LATER

# 800 estimated tokens (four characters a token); the limits below are 1,000.
BIG = "Please summarise these harbour notes. " * 84


@pytest.fixture
def limited() -> Iterator[Catalog]:
    """The test catalog with 1,000-token queues on gpt-4o-mini and gpt-4.1-mini."""
    from app.main import app

    shipped = get_catalog()
    models = [
        m.model_copy(update={"enqueued_token_limit": 1000})
        if m.name in {"gpt-4o-mini", "gpt-4.1-mini"}
        else m
        for m in shipped.models
    ]
    catalog = shipped.model_copy(update={"models": models})
    app.dependency_overrides[get_catalog] = lambda: catalog
    yield catalog
    app.dependency_overrides.pop(get_catalog, None)


def post(api: TestClient, prompt: str, **fields: object) -> dict[str, Any]:
    body = {"prompt": f"{prompt} ({uuid.uuid4().hex[:6]})", "tier": "economy", "cache": "bypass",
            "mode": "batch", **fields}  # fmt: skip
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    shown: dict[str, Any] = api.get(f"/v1/jobs/{response.json()['jobs'][0]['id']}").json()
    return shown


def test_a_full_queue_spills_to_the_next_model_of_the_chain(
    api: TestClient, db: Session, limited: Catalog
) -> None:
    first = post(api, BIG)
    assert first["model"] == "gpt-4o-mini"
    tokens = first["routing"]["expected_input_tokens"]
    assert 500 < tokens <= 1000
    # Batched (a pending provider batch), not ended: still in gpt-4o-mini's queue.
    assert collector.collect(db, catalog=limited, now=utcnow() + LATER)
    db.commit()

    spilled = post(api, BIG)
    assert spilled["model"] == "gpt-4.1-mini"
    assert spilled["routing"]["fallback"] == (
        f"gpt-4o-mini's batch queue is full ({tokens:,} of 1,000 enqueued tokens; this job "
        f"{spilled['routing']['expected_input_tokens']:,} more): gpt-4o-mini to gpt-4.1-mini"
    )
    assert "next in gpt-4o-mini's chain" in str(spilled["route_reason"])

    # A job that fits stays; a realtime job is not in the Batch API's queue.
    assert post(api, "Name a prime.")["model"] == "gpt-4o-mini"
    assert post(api, BIG, mode="realtime")["model"] == "gpt-4o-mini"

    # Both queues full: the next of the chain with room (claude-haiku-4-5 has no known
    # limit), through ingest this time.
    response = api.post("/v1/jobs", json={"prompt": BIG, "tier": "economy", "mode": "batch"})
    job_id = uuid.UUID(response.json()["jobs"][0]["id"])
    intake_ingest.ingest(db, job_ids=[job_id], catalog=limited)
    db.commit()
    routed = api.get(f"/v1/jobs/{job_id}").json()
    assert routed["model"] == "claude-haiku-4-5"
    assert routed["routing"]["fallback"].startswith("gpt-4o-mini's batch queue is full")

    # The queue frees as its jobs end.
    for shown in (first, spilled):
        assert api.delete(f"/v1/jobs/{shown['id']}").status_code == 200
    assert post(api, BIG)["model"] == "gpt-4o-mini"


def test_jobs_of_one_submission_count_against_the_queue_together(
    api: TestClient, db: Session, limited: Catalog
) -> None:
    body = [{"prompt": f"{BIG} {i}", "tier": "economy", "cache": "bypass", "mode": "batch"}
            for i in range(3)]  # fmt: skip
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    models = [db.get(Job, uuid.UUID(j["id"])).model for j in response.json()["jobs"]]  # type: ignore[union-attr]
    assert models == ["gpt-4o-mini", "gpt-4.1-mini", "claude-haiku-4-5"]
    states = {db.get(Job, uuid.UUID(j["id"])).state for j in response.json()["jobs"]}  # type: ignore[union-attr]
    assert states == {JobState.waiting}


def test_a_pinned_model_keeps_its_full_queue(api: TestClient, limited: Catalog) -> None:
    assert post(api, BIG, tier=None, model="gpt-4o-mini")["model"] == "gpt-4o-mini"
    assert post(api, BIG, tier=None, model="gpt-4o-mini")["model"] == "gpt-4o-mini"
