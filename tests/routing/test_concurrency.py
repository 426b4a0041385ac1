"""Concurrency limits: a model whose server takes so many requests at once
(``max_concurrent_requests``) gets no more realtime/flex jobs in flight than that; the next
job spills to the next model of its chain, says so, and the slots free as the calls end
(real Postgres, the simulator over HTTP through the submitter)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.batching import collector, submitter
from app.catalog.catalog import Catalog, ModelConfig, get_catalog
from app.models import Job, JobState, utcnow
from tests.batching.test_cancel_and_modes import LATER


@pytest.fixture
def capped() -> Iterator[Catalog]:
    """The test catalog with gpt-4o-mini's server taking 2 requests at once."""
    from app.main import app

    shipped = get_catalog()
    models = [
        m.model_copy(update={"max_concurrent_requests": 2}) if m.name == "gpt-4o-mini" else m
        for m in shipped.models
    ]
    catalog = shipped.model_copy(update={"models": models})
    app.dependency_overrides[get_catalog] = lambda: catalog
    yield catalog
    app.dependency_overrides.pop(get_catalog, None)


def post(api: TestClient, prompt: str) -> dict[str, Any]:
    body = {"prompt": f"{prompt} ({uuid.uuid4().hex[:6]})", "tier": "economy", "cache": "bypass",
            "mode": "realtime"}  # fmt: skip
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    shown: dict[str, Any] = api.get(f"/v1/jobs/{response.json()['jobs'][0]['id']}").json()
    return shown


def test_a_saturated_model_spills_realtime_work_down_its_chain(
    api: TestClient, db: Session, simulator: str, capped: Catalog
) -> None:
    first, second = post(api, "Name a prime."), post(api, "Name a colour.")
    assert [first["model"], second["model"]] == ["gpt-4o-mini", "gpt-4o-mini"]
    third = post(api, "Name a river.")
    assert third["model"] == "gpt-4.1-mini"  # the first of gpt-4o-mini's chain
    assert third["routing"]["fallback"] == (
        "gpt-4o-mini is saturated (2 of 2 concurrent requests in flight): "
        "gpt-4o-mini to gpt-4.1-mini"
    )
    assert third["routing"]["fallback_code"] == "saturated"
    assert "next in gpt-4o-mini's chain" in third["route_reason"]
    # A batch job does not take a server slot.
    batch = api.post("/v1/jobs", json={"prompt": "Name a sea.", "tier": "economy",
                                       "cache": "bypass", "mode": "batch"})  # fmt: skip
    assert api.get(f"/v1/jobs/{batch.json()['jobs'][0]['id']}").json()["model"] == "gpt-4o-mini"

    # The submitter calls gpt-4o-mini with at most its 2 slots, and the calls end.
    assert submitter._concurrency(capped, "openai", "gpt-4o-mini") == 2
    for batch_id in collector.collect(db, catalog=capped, now=utcnow() + LATER):
        db.commit()
        submitter.submit_batch(batch_id=batch_id, catalog=capped)
    for shown in (first, second):
        job = db.get(Job, uuid.UUID(shown["id"]))
        assert job is not None
        db.refresh(job)
        assert job.state == JobState.completed, job.error
    # Slots free: gpt-4o-mini takes realtime work again.
    assert post(api, "Name a mountain.")["model"] == "gpt-4o-mini"


def test_a_bad_concurrency_limit_is_refused_naming_the_field() -> None:
    shipped = get_catalog().model("gpt-4o-mini").model_dump()
    with pytest.raises(ValidationError, match="max_concurrent_requests"):
        ModelConfig.model_validate({**shipped, "max_concurrent_requests": 0})
