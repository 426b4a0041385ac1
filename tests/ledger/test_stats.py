"""/v1/stats from the rollups: sums to the last decimal, savings by layer, percentiles, peaks,
grouping, tenant scope and the 422s."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.ledger import service as ledger_service
from app.ledger.pricing import AnsweredBy, TokenUsage, chain
from app.ledger.schemas import StatsOut
from app.ledger.stats import stats
from app.models import JobMode, Tenant
from tests.conftest import make_tenant

HOUR = datetime(2026, 11, 30, 10, tzinfo=UTC)


def ended(
    tenant: Tenant,
    *,
    at: datetime,
    latency: float,
    model: str = "gpt-4o-mini",
    mode: JobMode = JobMode.batch,
    state: str = "completed",
    answered_by: AnsweredBy = AnsweredBy.provider,
    tokens: int = 1000,
    group_id: uuid.UUID | None = None,
    deadline: datetime | None = None,
) -> ledger_service.EndedJob:
    usage = TokenUsage(input_tokens=tokens, output_tokens=tokens // 4)
    costs = chain(get_catalog(), model=model, mode=mode, usage=usage, answered_by=answered_by)
    return ledger_service.EndedJob(
        job_id=uuid.uuid4(), tenant_id=tenant.id, group_id=group_id, state=state,
        provider="openai", model=model, mode=mode.value, usage=usage,
        costs=costs if state == "completed" else None,
        created_at=at - timedelta(seconds=latency), ended_at=at, deadline=deadline,
    )  # fmt: skip


@pytest.fixture
def history(db: Session, tenant: tuple[Tenant, str]) -> list[ledger_service.EndedJob]:
    """Jobs ending over three hours and a bit, of two models and modes, hits and failures."""
    group = uuid.uuid4()
    jobs: list[ledger_service.EndedJob] = []
    for i in range(200):
        at = HOUR + timedelta(minutes=i % 190, seconds=i % 7)
        jobs.append(
            ended(
                tenant[0],
                at=at,
                latency=1.0 + i,
                model="gpt-4o-mini" if i % 2 else "gpt-4.1-mini",
                mode=JobMode.batch if i % 3 else JobMode.realtime,
                answered_by=AnsweredBy.cache_exact
                if i % 10 == 0
                else AnsweredBy.cache_semantic
                if i % 10 == 1
                else AnsweredBy.provider,
                tokens=100 + 13 * i,
                group_id=group if i < 50 else None,
                deadline=at + timedelta(seconds=5) if i % 4 == 0 else None,
            )
        )
    jobs += [ended(tenant[0], at=HOUR + timedelta(minutes=20), latency=3, state="failed")] * 1
    jobs.append(ended(tenant[0], at=HOUR + timedelta(minutes=21), latency=3, state="cancelled"))
    ledger_service.record(db, jobs)
    # Another tenant's jobs are never in this tenant's answer.
    other, _ = make_tenant(db, name="other")
    ledger_service.record(db, [ended(other, at=HOUR + timedelta(minutes=30), latency=2)])
    db.commit()
    return jobs


def _expected(jobs: list[ledger_service.EndedJob], since: datetime, until: datetime) -> dict:
    inside = [j for j in jobs if since <= j.ended_at < until and j.state == "completed"]
    costs = [j.costs for j in inside if j.costs]
    return {
        "completed": len(inside),
        "cost": sum((c.actual for c in costs), Decimal(0)),
        "naive": sum((c.naive for c in costs), Decimal(0)),
        "routing": sum((c.savings.routing for c in costs), Decimal(0)),
        "cache": sum((c.savings.cache for c in costs), Decimal(0)),
    }


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (HOUR, HOUR + timedelta(hours=4)),  # whole hours
        (HOUR + timedelta(minutes=17, seconds=3), HOUR + timedelta(hours=2, minutes=41)),
        (HOUR + timedelta(minutes=5), HOUR + timedelta(minutes=50)),  # inside one hour
        (HOUR + timedelta(minutes=50), HOUR + timedelta(hours=1, minutes=10)),  # two partials
    ],
)
def test_stats_agree_with_the_records_to_the_last_decimal(
    db: Session,
    tenant: tuple[Tenant, str],
    history: list[ledger_service.EndedJob],
    since: datetime,
    until: datetime,
) -> None:
    out = stats(db, tenant_id=tenant[0].id, since=since, until=until)
    expected = _expected(history, since, until)
    assert out.jobs["completed"] == expected["completed"]
    assert out.cost_usd == expected["cost"]
    assert out.naive_cost_usd == expected["naive"]
    assert out.savings_usd.routing == expected["routing"]
    assert out.savings_usd.cache == expected["cache"]
    layers = out.savings_usd
    total = (
        layers.cache + layers.coalescing + layers.routing + layers.batching + layers.prompt_cache
    )
    assert total == out.naive_cost_usd - out.cost_usd == out.saved_usd


def test_stats_percentiles_rates_and_peaks(
    db: Session, tenant: tuple[Tenant, str], history: list[ledger_service.EndedJob]
) -> None:
    out = stats(db, tenant_id=tenant[0].id, since=HOUR, until=HOUR + timedelta(hours=4))
    assert out.jobs == {"completed": 200, "failed": 1, "cancelled": 1, "total": 202}
    latencies = sorted(1.0 + i for i in range(200))
    assert out.lpr_seconds.p50 is not None
    assert out.lpr_seconds.p99 is not None
    assert abs(out.lpr_seconds.p50 - latencies[99]) / latencies[99] < 0.27
    assert abs(out.lpr_seconds.p99 - latencies[197]) / latencies[197] < 0.27
    assert set(out.lpr_seconds_by_mode) == {"batch", "realtime"}
    assert out.cache_hit_rate.exact == 0.1
    assert out.cache_hit_rate.semantic == 0.1
    assert out.cache_hit_rate.total == 0.2
    # Minutes 0..9 each end two jobs (i and i + 190).
    assert out.peak_minute_jobs_per_s == round(2 / 60, 6)
    assert out.throughput_jobs_per_s == round(200 / (4 * 3600), 6)
    # Deadlines of 5 s after the end: never met (the job ended before, but wait — met).
    assert out.deadlines.jobs == 50
    assert out.deadlines.met == 50
    assert out.cpr_usd == (out.cost_usd / 200).quantize(Decimal("1e-12"))


@pytest.mark.parametrize("group_by", ["model", "mode", "day", "hour", "group"])
def test_groups_add_up_to_the_total(
    db: Session,
    tenant: tuple[Tenant, str],
    history: list[ledger_service.EndedJob],
    group_by: str,
) -> None:
    since, until = HOUR + timedelta(minutes=7), HOUR + timedelta(hours=3, minutes=2)
    out = stats(db, tenant_id=tenant[0].id, since=since, until=until, group_by=group_by)  # type: ignore[arg-type]
    assert out.groups
    assert sum((g.cost_usd for g in out.groups), Decimal(0)) == out.cost_usd
    assert sum(g.jobs["completed"] for g in out.groups) == out.jobs["completed"]
    assert sum((g.savings_usd.routing for g in out.groups), Decimal(0)) == out.savings_usd.routing
    keys = [g.key for g in out.groups]
    if group_by == "model":
        assert keys == ["gpt-4.1-mini", "gpt-4o-mini"]
    if group_by == "hour":
        assert keys[0] == HOUR.isoformat()
        assert len(keys) == 4
    if group_by == "group":
        assert "none" in keys
        assert len(keys) == 2


def test_every_tenant_is_the_operator_view(
    db: Session, tenant: tuple[Tenant, str], history: list[ledger_service.EndedJob]
) -> None:
    until = HOUR + timedelta(hours=4)
    mine = stats(db, tenant_id=tenant[0].id, since=HOUR, until=until)
    everyone = stats(db, tenant_id=None, since=HOUR, until=until)
    assert everyone.jobs["completed"] == mine.jobs["completed"] + 1


def test_the_stats_endpoint(api: TestClient, history: list[ledger_service.EndedJob]) -> None:
    response = api.get(
        "/v1/stats",
        params={"since": HOUR.isoformat(), "until": "2026-11-30T14:00:00Z", "group_by": "mode"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    # Written straight from the sums: the response model's own JSON, byte for byte.
    answer = TypeAdapter(StatsOut)
    assert answer.dump_json(answer.validate_json(response.content)) == response.content
    body = response.json()
    for field in ("jobs", "cost_usd", "naive_cost_usd", "cpr_usd", "naive_cpr_usd",
                  "savings_usd", "lpr_seconds", "throughput_jobs_per_s", "cache_hit_rate",
                  "groups"):  # fmt: skip
        assert field in body
    assert isinstance(body["cost_usd"], str)
    assert isinstance(body["savings_usd"]["cache"], str)
    assert set(body["lpr_seconds"]) >= {"p50", "p95", "p99"}
    assert {g["key"] for g in body["groups"]} == {"batch", "realtime"}
    # Relative ranges work too (nothing ended in the last hour).
    recent = api.get("/v1/stats", params={"since": "1h"}).json()
    assert recent["jobs"]["total"] == 0
    assert recent["cost_usd"] == "0.000000000000"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"group_by": "tenant"}, "group_by"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45"}, "until"),
        ({"since": "2026-11-30T12:00:00Z", "until": "2026-11-30T10:00:00Z"}, "before"),
        ({"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "too large"),
        ({"since": "40d", "group_by": "hour"}, "too large"),
        ({"since": "9999-12-31T23:59:59Z", "until": "9999-12-31T23:59:59.5Z"}, "outside"),
        ({"until": "99999999999999999999"}, "until"),
    ],
)
def test_bad_ranges_and_groupings_are_422s(
    api: TestClient, params: dict[str, str], needle: str
) -> None:
    response = api.get("/v1/stats", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert needle in error["message"]


def test_stats_need_a_key(api: TestClient) -> None:
    assert api.get("/v1/stats", headers={"Authorization": ""}).status_code == 401


def test_an_operator_key_sees_every_tenant_and_a_key_without_stats_scope_none(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], history: list[ledger_service.EndedJob]
) -> None:
    from app.tenants import service as tenant_service
    from app.tenants.scopes import Scope
    from tests.conftest import operator_headers

    params = {"since": HOUR.isoformat(), "until": "2026-11-30T14:00:00Z"}
    mine = api.get("/v1/stats", params=params).json()
    everyone = api.get("/v1/stats", params=params, headers=operator_headers(db, tenant[0]))
    assert everyone.status_code == 200
    assert everyone.json()["jobs"]["completed"] == mine["jobs"]["completed"] + 1
    _, jobs_only = tenant_service.create_key(db, tenant=tenant[0], scopes={Scope.jobs_read})
    db.commit()
    denied = api.get("/v1/stats", headers={"Authorization": f"Bearer {jobs_only}"})
    assert denied.status_code == 403
