"""The semantic cache end to end: API, a real Celery worker (which loads the model once),
the simulator over HTTP, the poller's cache write, then a paraphrase answered from it."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.kit.text import normalise
from app.models import CacheEntry, JobEmbedding
from tests.integration.test_pipeline import DOC, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def test_a_paraphrase_and_an_edited_document_are_answered_from_the_cache(
    api: TestClient, db: Session
) -> None:
    first = api.post(
        "/v1/jobs",
        json=[{"prompt": "How can I learn to play the guitar quickly?"}, {"document": DOC}],
    ).json()
    ids = [j["id"] for j in first["jobs"]]
    wait_for(api, f"/v1/groups/{first['group_id']}", lambda b: b["done"], timeout=120)
    originals = [api.get(f"/v1/jobs/{i}").json() for i in ids]
    assert [o["state"] for o in originals] == ["completed", "completed"]
    assert not any(o["cache_hit"] for o in originals)

    entries = db.scalars(select(CacheEntry)).all()
    assert len(entries) == 2
    assert all(e.scope_key for e in entries)
    # a prompt is stored with its vector, a document with its near-duplicate band keys
    assert {e.kind: (e.embedding is not None, e.lsh_bands is not None) for e in entries} == {
        "prompt": (True, False),
        "document": (False, True),
    }
    # the poller passes what was asked with the answer: the cache does not read the jobs table
    assert {e.request_text for e in entries} == {
        "How can I learn to play the guitar quickly?",
        normalise(DOC),
    }
    assert db.scalars(select(JobEmbedding)).all() == []  # moved onto the entries

    second = api.post(
        "/v1/jobs",
        json=[
            {"prompt": "How do I learn to play the guitar quickly?"},
            {"document": "Millbrook river wall repaired early\n\n" + DOC.replace(". ", ".  ")},
            {"prompt": "How do I learn to play the guitar quickly?", "cache": "bypass"},
            {"prompt": "How can I learn to play the violin quickly?"},
        ],
    ).json()
    wait_for(api, f"/v1/groups/{second['group_id']}", lambda b: b["done"], timeout=120)
    paraphrase, edited, bypass, other = (
        api.get(f"/v1/jobs/{j['id']}").json() for j in second["jobs"]
    )
    assert paraphrase["cache_hit"] is True
    assert paraphrase["cached_from_job_id"] == ids[0]
    assert paraphrase["result"] == originals[0]["result"]
    assert 0.9 <= paraphrase["cache_similarity"] < 1.0
    assert Decimal(paraphrase["cost"]["cost_usd"]) == 0
    assert edited["cache_hit"] is True
    assert edited["cached_from_job_id"] == ids[1]
    assert bypass["cache_hit"] is False
    assert other["cache_hit"] is False
    assert other["result"] != originals[0]["result"]

    db.expire_all()
    stored = {e.source_job_id: e for e in db.scalars(select(CacheEntry))}
    # the violin question was written with its ingest vector; the bypassed job was not written
    assert len(stored) == 3
    vectors = [np.asarray(e.embedding) for e in stored.values() if e.kind == "prompt"]
    assert len(vectors) == 2
    assert all(v.shape == (384,) for v in vectors)
