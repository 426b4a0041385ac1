"""A mixed run through the API and a real worker: /v1/stats agrees with the sum of the jobs."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.ledger.pricing import TokenUsage, list_price
from app.models import Tenant
from app.tenants import service as tenant_service
from tests.integration.test_pipeline import wait_for

pytestmark = pytest.mark.usefixtures("worker")


def test_stats_agree_with_the_jobs_to_the_last_decimal(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    # The tenant's own baseline: naive is priced on gpt-4.1, not the catalog's gpt-4o.
    tenant_service.set_baseline_model(db, tenant=tenant[0], model="gpt-4.1")
    db.commit()
    tag = uuid.uuid4().hex[:8]
    prompts = [f"What is the capital of country {i} ({tag})?" for i in range(12)]
    first = api.post(
        "/v1/jobs",
        json=[{"prompt": p} for p in prompts]
        + [{"prompt": f"Say hi {i} ({tag})", "mode": "realtime"} for i in range(4)],
    )
    assert first.status_code == 202
    group = first.json()["group_id"]
    wait_for(api, f"/v1/groups/{group}", lambda b: b["done"], timeout=120)
    # The same prompts again: exact cache hits that cost nothing.
    again = api.post("/v1/jobs", json=[{"prompt": p} for p in prompts[:6]]).json()["group_id"]
    hits = wait_for(api, f"/v1/groups/{again}", lambda b: b["done"], timeout=120)
    assert hits["cache_hits"] == 6

    jobs = [
        orjson.loads(line)
        for gid in (group, again)
        for line in api.get(f"/v1/groups/{gid}/results").text.splitlines()
    ]
    baseline = get_catalog().model("gpt-4.1")
    for job in jobs:
        usage = TokenUsage(job["usage"]["input_tokens"], job["usage"]["output_tokens"])
        assert Decimal(job["cost"]["naive_cost_usd"]) == list_price(baseline, usage)
        # Each job's savings by layer, from its cost record, add up to its saving.
        layers = job["cost"]["savings_usd"]
        assert sum((Decimal(v) for v in layers.values()), Decimal(0)) == Decimal(
            job["cost"]["saved_usd"]
        )
    cost = sum((Decimal(j["cost"]["cost_usd"]) for j in jobs), Decimal(0))
    naive = sum((Decimal(j["cost"]["naive_cost_usd"]) for j in jobs), Decimal(0))
    stats = api.get("/v1/stats", params={"since": "1h", "group_by": "mode"}).json()
    assert stats["jobs"]["completed"] == len(jobs) == 22
    assert Decimal(stats["cost_usd"]) == cost
    assert Decimal(stats["naive_cost_usd"]) == naive
    savings = sum((Decimal(v) for v in stats["savings_usd"].values()), Decimal(0))
    assert savings == naive - cost
    for layer, amount in stats["savings_usd"].items():
        per_job = sum((Decimal(j["cost"]["savings_usd"][layer]) for j in jobs), Decimal(0))
        assert Decimal(amount) == per_job, layer
    assert Decimal(stats["savings_usd"]["cache"]) > 0
    assert Decimal(stats["savings_usd"]["batching"]) > 0
    assert stats["cache_hit_rate"]["exact"] == round(6 / 22, 6)
    assert {g["key"] for g in stats["groups"]} == {"batch", "realtime"}
    assert stats["lpr_seconds"]["p50"] > 0
    # A hit's saving is what it would have cost routed and batched, not the naive price.
    hit = next(j for j in jobs if j["cache_hit"])
    source = next(j for j in jobs if j["id"] == hit["cached_from_job_id"])
    assert Decimal(hit["cost"]["cost_usd"]) == 0
    assert Decimal(hit["cost"]["naive_cost_usd"]) == Decimal(source["cost"]["naive_cost_usd"])
