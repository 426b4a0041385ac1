"""Budgets count work in flight: every routed job reserves its expected cost
(``jobs.reserved_usd`` = its routing record's ``expected_cost_usd``), and a submission is
checked against the ledger's spend plus those reservations, under a per-tenant advisory lock,
so a tenant cannot submit far over its budget before anything ends (real Postgres; the
reservations clearing as costs land is in test_budgets.py, with a real worker)."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.intake import ingest as intake_ingest
from app.intake import submit as intake_submit
from app.jobs.schemas import JobIn
from app.kit.errors import TooManyRequests
from app.models import Job, JobState, Tenant
from tests.jobs.test_submit import assert_error
from tests.routing.test_budgets import PREMIUM, settings


def premium(n: int, **fields: Any) -> list[dict[str, Any]]:
    return [{**PREMIUM, "prompt": f"Explain why the sky is blue, part {i}.", **fields}
            for i in range(n)]  # fmt: skip


def one_cost(api: TestClient) -> Decimal:
    """The expected cost of one PREMIUM-like job, as its routing record has it (the budget
    here is set to cover a few of them: nothing has ended, so only reservations count)."""
    job_id = api.post("/v1/jobs", json=premium(1)[0]).json()["jobs"][0]["id"]
    return Decimal(api.get(f"/v1/jobs/{job_id}").json()["routing"]["expected_cost_usd"])


def test_reservations_of_jobs_in_flight_refuse_a_list_that_would_cross_the_budget(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    cost = one_cost(api)  # no budget yet: one job in flight, reserving its cost
    stored = db.scalars(select(Job)).one()
    assert stored.reserved_usd == cost
    assert stored.routing is not None
    assert Decimal(stored.routing["expected_cost_usd"]) == stored.reserved_usd
    settings(api, daily_budget_usd=str(cost * 4 + cost / 2))  # room for 4 jobs in all

    assert api.post("/v1/jobs", json=premium(2)).status_code == 202  # 3 in flight
    # 2 more would make 5: the list is refused whole, nothing of it stored.
    message = assert_error(api.post("/v1/jobs", json=premium(2)), 429, "budget_exceeded")
    assert "daily budget of" in message
    assert "would be passed" in message
    assert "USD reserved by jobs in flight" in message
    assert "refused whole" in message
    assert db.scalar(select(func.count()).select_from(Job)) == 3
    # A job left for ingest (the cache path) reserves its rules route's cost too: the 4th fits.
    cached = api.post("/v1/jobs", json={**premium(1)[0], "cache": "default"})
    assert cached.status_code == 202
    queued = db.get(Job, uuid.UUID(cached.json()["jobs"][0]["id"]))
    assert queued is not None
    assert queued.state == JobState.queued
    assert queued.reserved_usd == cost
    assert_error(api.post("/v1/jobs", json=premium(1)[0]), 429, "budget_exceeded")
    # Routed at ingest, its reservation is its route's expected cost.
    intake_ingest.ingest(db, job_ids=[queued.id], catalog=get_catalog())
    db.commit()
    db.refresh(queued)
    assert queued.routing is not None
    assert queued.reserved_usd == Decimal(queued.routing["expected_cost_usd"])


def test_downgrade_sends_only_the_jobs_past_the_budget_to_cheaper_models(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    cost = one_cost(api)
    settings(api, daily_budget_usd=str(cost * 3 + cost / 2), budget_policy="downgrade")
    answer = api.post("/v1/jobs", json=premium(4)).json()  # 2 fit beside the first, 2 do not
    jobs = [api.get(f"/v1/jobs/{j['id']}").json() for j in answer["jobs"]]
    assert [j["model"] for j in jobs[:2]] == ["gpt-4o", "gpt-4o"]
    catalog = get_catalog()
    cheapest = min(catalog.models, key=lambda m: (m.input_per_mtok, m.output_per_mtok))
    assert [j["model"] for j in jobs[2:]] == [cheapest.name, cheapest.name]
    for job in jobs[2:]:
        assert "would be passed" in job["routing"]["budget"]
        assert job["routing"]["budget"].endswith(f"downgraded from gpt-4o to {cheapest.name}")
    assert jobs[0]["routing"].get("budget") is None
    # A pinned job past the budget cannot be downgraded: the whole list is refused.
    pinned = [{**premium(1)[0], "tier": None, "model": "gpt-4o"}]
    assert "cannot be downgraded" in assert_error(api.post("/v1/jobs", json=pinned), 429,
                                                  "budget_exceeded")  # fmt: skip


def _waiting_on_advisory_lock(db: Session) -> bool:
    found = db.execute(
        text("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'")
    ).scalar_one()
    db.commit()
    return bool(found)


def test_concurrent_submissions_of_one_tenant_do_not_both_pass(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    cost = one_cost(api)
    settings(api, daily_budget_usd=str(cost * 3 + cost / 2))  # room for 2 more jobs
    catalog = get_catalog()
    items = [JobIn.model_validate(item) for item in premium(2)]
    first = Session(bind=db.get_bind())
    second = Session(bind=db.get_bind())
    outcome: list[BaseException | None] = []

    def submit_second() -> None:
        try:
            owner = second.get(Tenant, tenant[0].id)
            assert owner is not None
            intake_submit.submit(second, tenant=owner, items=items, as_group=False,
                                 catalog=catalog)  # fmt: skip
            second.commit()
            outcome.append(None)
        except TooManyRequests as exc:
            second.rollback()
            outcome.append(exc)

    try:
        owner = first.get(Tenant, tenant[0].id)
        assert owner is not None
        # The first holds the tenant's lock from its check until it commits.
        intake_submit.submit(first, tenant=owner, items=items, as_group=False, catalog=catalog)
        thread = threading.Thread(target=submit_second)
        thread.start()
        while not _waiting_on_advisory_lock(db):  # the second waits for the first's commit
            assert thread.is_alive()
        first.commit()
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        first.close()
        second.close()
    (refused,) = outcome
    assert isinstance(refused, TooManyRequests)
    assert refused.type == "budget_exceeded"
    assert db.scalar(select(func.count()).select_from(Job)) == 3  # the first job + 2
