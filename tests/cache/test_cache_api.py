"""/v1/cache endpoints and the cache fields of /v1/jobs, through the real API and Postgres."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cache import service as cache_service
from app.models import CacheEntry, Job, Tenant
from tests.conftest import make_tenant
from tests.factories import make_job


def entry(db: Session, tenant: Tenant, text: str) -> CacheEntry:
    source = make_job(db, tenant=tenant, prompt=text)
    source.cache_key = cache_service.cache_key(source, tier="economy")
    cache_service.store_many(
        db,
        [
            cache_service.CacheWrite(
                tenant_id=tenant.id,
                cache_key=source.cache_key,
                model="gpt-4o-mini",
                result=f"answer to {text}",
                source_job_id=source.id,
                input_tokens=3,
                output_tokens=4,
                cache_mode=source.cache_mode,
                prompt=source.prompt,
                document=source.document,
            )
        ],
    )
    db.commit()
    return db.scalars(select(CacheEntry).where(CacheEntry.source_job_id == source.id)).one()


def test_settings_default_then_change_then_reset(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    first = api.get("/v1/cache/settings").json()
    assert first["semantic_enabled"] is True
    assert first["entries"] == 0
    assert first["ttl_seconds"] is None

    changed = api.put(
        "/v1/cache/settings",
        json={"prompt_threshold": 0.97, "ttl_seconds": 3600, "max_entries": 10},
    )
    assert changed.status_code == 200
    assert changed.json()["prompt_threshold"] == 0.97
    assert changed.json()["document_threshold"] == first["document_threshold"]
    assert changed.json()["max_entries"] == 10

    reset = api.put("/v1/cache/settings", json={"prompt_threshold": None}).json()
    assert reset["prompt_threshold"] == first["prompt_threshold"]
    assert reset["ttl_seconds"] == 3600


def test_settings_reject_bad_values(api: TestClient) -> None:
    for body in ({"prompt_threshold": 1.5}, {"max_entries": 0}, {"colour": "red"}):
        response = api.put("/v1/cache/settings", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["type"] == "validation_error"


def test_lowering_max_entries_evicts_at_once(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    for text in ("one", "two", "three"):
        entry(db, tenant[0], text)
    response = api.put("/v1/cache/settings", json={"max_entries": 1})
    assert response.json()["entries"] == 1


def test_invalidate_by_source_job_entry_id_and_all(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    first, second, _third = (entry(db, tenant[0], t) for t in ("alpha", "beta", "gamma"))
    other_tenant, _ = make_tenant(db, name="globex")
    foreign = entry(db, other_tenant, "alpha")

    by_job = api.post("/v1/cache/invalidate", json={"source_job_ids": [str(first.source_job_id)]})
    assert by_job.status_code == 200
    assert by_job.json() == {"invalidated": 1}
    by_id = api.post("/v1/cache/invalidate", json={"entry_ids": [str(second.id)]})
    assert by_id.json() == {"invalidated": 1}
    # another tenant's entry is out of reach, even by id
    assert api.post("/v1/cache/invalidate", json={"entry_ids": [str(foreign.id)]}).json() == {
        "invalidated": 0
    }
    assert api.post("/v1/cache/invalidate", json={"all": True}).json() == {"invalidated": 1}
    db.expire_all()
    left = db.scalars(select(CacheEntry)).all()
    assert [e.id for e in left] == [foreign.id]


def test_invalidate_needs_a_selection(api: TestClient) -> None:
    response = api.post("/v1/cache/invalidate", json={})
    assert response.status_code == 422
    assert "entry_ids" in response.json()["error"]["message"]


def test_cache_endpoints_need_a_key(db: Session) -> None:
    from app.main import app

    with TestClient(app) as anonymous:
        assert anonymous.get("/v1/cache/settings").status_code == 401
        assert anonymous.post("/v1/cache/invalidate", json={"all": True}).status_code == 401


def test_jobs_take_cache_controls_and_report_the_similarity(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    response = api.post(
        "/v1/jobs",
        json={"prompt": "Hello there", "cache": "refresh", "temperature": 0.5,
              "semantic_cache": True},
    )  # fmt: skip
    assert response.status_code == 202
    job = db.get(Job, uuid.UUID(response.json()["jobs"][0]["id"]))
    assert job is not None
    assert (job.cache_mode, job.temperature, job.semantic_cache) == ("refresh", 0.5, True)

    job.cache_hit, job.cache_similarity = True, 0.9731
    db.commit()
    shown = api.get(f"/v1/jobs/{job.id}").json()
    assert shown["cache_similarity"] == 0.9731

    for bad in ({"prompt": "x", "cache": "sometimes"}, {"prompt": "x", "temperature": -1}):
        assert api.post("/v1/jobs", json=bad).status_code == 422, bad
