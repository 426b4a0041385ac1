"""Tenant budgets over the ledger's actual costs: the settings, a 429 ``budget_exceeded``
for a ``reject`` tenant over budget, cheaper models for a ``downgrade`` one, and jobs
accepted before the budget was reached still completing (real Postgres, worker, simulator)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.intake import ingest as intake_ingest
from app.ledger import service as ledger_service
from app.models import Job, JobState, Tenant, utcnow
from app.routing.budgets import period_starts
from tests.integration.test_pipeline import wait_for
from tests.jobs.test_submit import assert_error

PREMIUM = {"prompt": "Explain why the sky is blue.", "tier": "premium", "cache": "bypass"}


def spend(db: Session, tenant: Tenant, amount: str, *, ended_at: datetime | None = None) -> None:
    """A job of ``tenant`` that ended now (or at ``ended_at``) having cost ``amount``."""
    ended = ended_at or utcnow()
    cost = Decimal(amount)
    job = ledger_service.EndedJob(
        job_id=uuid.uuid4(), tenant_id=tenant.id, group_id=None, state="completed",
        provider="openai", model="gpt-4o", mode="batch",
        usage=ledger_service.TokenUsage(1000, 100),
        costs=ledger_service.CostChain(cost, cost, cost, cost, cost),
        created_at=ended - timedelta(seconds=5), ended_at=ended, deadline=None,
    )  # fmt: skip
    ledger_service.record(db, [job])
    db.commit()


def settings(api: TestClient, **body: object) -> dict[str, object]:
    response = api.put("/v1/routing/settings", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_budget_settings_defaults_changes_and_bad_values(api: TestClient) -> None:
    got = api.get("/v1/routing/settings").json()
    assert (got["daily_budget_usd"], got["monthly_budget_usd"], got["budget_policy"]) == (
        None, None, "reject",
    )  # fmt: skip
    put = settings(api, daily_budget_usd="2.5", monthly_budget_usd=40, budget_policy="downgrade")
    assert (put["daily_budget_usd"], put["monthly_budget_usd"], put["budget_policy"]) == (
        "2.5", "40", "downgrade",
    )  # fmt: skip
    # Fields left out are unchanged; null removes a budget.
    put = settings(api, daily_budget_usd=None)
    assert (put["daily_budget_usd"], put["monthly_budget_usd"]) == (None, "40")
    for body, field in [
        ({"daily_budget_usd": -1}, "daily_budget_usd"),
        ({"monthly_budget_usd": "-0.01"}, "monthly_budget_usd"),
        ({"daily_budget_usd": "lots"}, "daily_budget_usd"),
        ({"budget_policy": "shrug"}, "budget_policy"),
    ]:
        message = assert_error(api.put("/v1/routing/settings", json=body), 422,
                               "validation_error")  # fmt: skip
        assert field in message
    assert api.get("/v1/routing/settings").json()["budget_policy"] == "downgrade"


def test_a_reject_tenant_over_its_daily_budget_gets_budget_exceeded(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    settings(api, daily_budget_usd="1.00")
    spend(db, tenant[0], "0.60")
    assert api.post("/v1/jobs", json=PREMIUM).status_code == 202  # under budget
    spend(db, tenant[0], "0.40")  # 1.00 spent: the budget is reached
    response = api.post("/v1/jobs", json=PREMIUM)
    message = assert_error(response, 429, "budget_exceeded")
    assert "daily budget of 1 USD reached (1.000000 USD spent, " in message
    assert "USD reserved by jobs in flight" in message  # the job accepted above
    retry = int(response.headers["Retry-After"])
    midnight = period_starts(datetime.now(UTC))["daily"][1]
    assert 0 < retry <= 86400
    assert abs(retry - (midnight - datetime.now(UTC)).total_seconds()) < 60
    assert response.json()["error"]["details"] == [{"retry_after": retry}]
    # A list is refused whole; nothing was stored by the refused requests.
    listed = api.post("/v1/jobs", json=[PREMIUM, PREMIUM])
    assert_error(listed, 429, "budget_exceeded")
    assert len(db.scalars(select(Job.id)).all()) == 1
    # Raising the budget lets work in again.
    settings(api, daily_budget_usd="5")
    assert api.post("/v1/jobs", json=PREMIUM).status_code == 202


def test_a_monthly_budget_counts_the_whole_month_and_resets_at_its_end(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    now = datetime.now(UTC)
    month_start, next_month = period_starts(now)["monthly"]
    spend(db, tenant[0], "3", ended_at=month_start - timedelta(minutes=1))  # last month
    settings(api, monthly_budget_usd="2", daily_budget_usd="100")
    assert api.post("/v1/jobs", json=PREMIUM).status_code == 202
    spend(db, tenant[0], "2", ended_at=max(month_start, now - timedelta(hours=2)))
    response = api.post("/v1/jobs", json=PREMIUM)
    assert "monthly budget of 2 USD reached" in assert_error(response, 429, "budget_exceeded")
    retry = int(response.headers["Retry-After"])
    assert abs(retry - (next_month - datetime.now(UTC)).total_seconds()) < 60


def test_downgrade_sends_new_jobs_to_a_cheaper_model_and_refuses_pinned_ones(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    catalog = get_catalog()
    settings(api, daily_budget_usd="0.5", budget_policy="downgrade")
    before = api.post("/v1/jobs", json=PREMIUM).json()["jobs"][0]["id"]
    # Accepted before the budget was reached, queued for ingest: a pinned one and a free one.
    queued_pinned = api.post("/v1/jobs", json={"prompt": "Hi.", "model": "gpt-4o"}).json()
    queued_free = api.post("/v1/jobs", json={"prompt": "Explain tides.", "tier": "premium"})
    assert api.get(f"/v1/jobs/{before}").json()["model"] == "gpt-4o"
    spend(db, tenant[0], "0.75")

    after = api.post("/v1/jobs", json=PREMIUM).json()["jobs"][0]["id"]
    job = api.get(f"/v1/jobs/{after}").json()
    cheapest = min(catalog.models, key=lambda m: (m.input_per_mtok, m.output_per_mtok))
    assert job["model"] == cheapest.name
    assert job["state"] == "waiting"
    routing = job["routing"]
    assert routing["budget"].startswith("daily budget of 0.5 USD reached (0.750000 USD spent, ")
    assert routing["budget"].endswith(f"): downgraded from gpt-4o to {cheapest.name}")
    assert f"downgraded to {cheapest.name}" in job["route_reason"]
    costs = {c["model"]: Decimal(c["expected_cost_usd"]) for c in routing["candidates"]}
    assert costs[cheapest.name] < costs["gpt-4o"]
    assert Decimal(routing["expected_cost_usd"]) == costs[cheapest.name]

    pinned = api.post("/v1/jobs", json={**PREMIUM, "tier": None, "model": "gpt-4o"})
    assert "cannot be downgraded" in assert_error(pinned, 429, "budget_exceeded")

    # At ingest: the free job is downgraded, the pinned one accepted earlier keeps its model.
    ids = list(db.scalars(select(Job.id).where(Job.state == JobState.queued)))
    intake_ingest.ingest(db, job_ids=ids, catalog=catalog)
    db.commit()
    kept = api.get(f"/v1/jobs/{queued_pinned['jobs'][0]['id']}").json()
    assert kept["model"] == "gpt-4o"
    assert kept["routing"]["budget"].endswith("the client's model is kept")
    free = api.get(f"/v1/jobs/{queued_free.json()['jobs'][0]['id']}").json()
    assert free["model"] == cheapest.name
    assert f"downgraded from gpt-4o to {cheapest.name}" in free["routing"]["budget"]


def test_jobs_accepted_before_the_budget_was_reached_still_complete(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], worker: str
) -> None:
    settings(api, daily_budget_usd="1")
    accepted = api.post(
        "/v1/jobs", json=[{"prompt": f"Name prime number {i}."} for i in range(3)]
    ).json()
    spend(db, tenant[0], "1.5")
    assert_error(api.post("/v1/jobs", json=PREMIUM), 429, "budget_exceeded")
    for submitted in accepted["jobs"]:
        job = wait_for(api, f"/v1/jobs/{submitted['id']}",
                       lambda b: b["state"] in {"completed", "failed"})  # fmt: skip
        assert job["state"] == "completed", job
        assert job["result"]
        # The actual cost landed: the reservation is cleared.
        stored = db.get(Job, uuid.UUID(submitted["id"]))
        assert stored is not None
        db.refresh(stored)
        assert stored.reserved_usd is None
