"""Cost records are written with the transition that ends a job, once, and never changed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.jobs import transitions
from app.jobs.transitions import JobOutcome
from app.ledger import histogram
from app.ledger import service as ledger_service
from app.models import (
    EVERY_TENANT,
    MINUTE_COLUMNS,
    CostDayRollup,
    CostPeak,
    CostRecord,
    CostRollup,
    Job,
    JobState,
    Tenant,
    utcnow,
)
from tests.factories import make_job


def submitted_jobs(db: Session, tenant: Tenant, count: int) -> list[Job]:
    jobs = [make_job(db, tenant=tenant, state=JobState.waiting) for _ in range(count)]
    for job in jobs:
        job.state = JobState.submitted
    db.commit()
    return jobs


def outcome(job: Job, *, tokens: int = 1000) -> JobOutcome:
    usage = ledger_service.TokenUsage(input_tokens=tokens, output_tokens=tokens // 5)
    costs = ledger_service.chain(get_catalog(), model="gpt-4o-mini", mode=job.mode, usage=usage)
    return JobOutcome(
        job.id, JobState.completed, "answer", None, tokens, tokens // 5, 0, 0, costs, utcnow()
    )


def rollup_totals(db: Session) -> tuple[int, Decimal, Decimal, Decimal]:
    row = db.execute(
        select(
            func.sum(CostRollup.completed),
            func.sum(CostRollup.cost_usd),
            func.sum(CostRollup.naive_cost_usd),
            func.sum(
                CostRollup.saved_cache_usd
                + CostRollup.saved_coalescing_usd
                + CostRollup.saved_routing_usd
                + CostRollup.saved_batching_usd
                + CostRollup.saved_prompt_cache_usd
            ),
        )
    ).one()
    return int(row[0] or 0), Decimal(row[1] or 0), Decimal(row[2] or 0), Decimal(row[3] or 0)


def test_results_write_cost_records_and_rollups_in_their_transaction(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    jobs = submitted_jobs(db, tenant[0], 5)
    outcomes = [outcome(job, tokens=100 * (i + 1)) for i, job in enumerate(jobs)]
    transitions.apply_results(db, outcomes, from_state=JobState.submitted)
    db.commit()

    records = db.scalars(select(CostRecord)).all()
    assert {r.job_id for r in records} == {j.id for j in jobs}
    stored = {j.id: j for j in db.scalars(select(Job)).all()}
    for record in records:
        assert record.state == "completed"
        assert record.answered_by == "provider"
        # The public cost of the job is the ledger's, to the last decimal.
        assert stored[record.job_id].cost_usd == record.actual_usd
        assert stored[record.job_id].naive_cost_usd == record.naive_usd
        assert record.latency_seconds is not None
        assert record.latency_seconds >= 0
    completed, cost, naive, saved = rollup_totals(db)
    assert completed == 5
    assert cost == sum((o.costs.actual for o in outcomes if o.costs), Decimal(0))
    assert naive == sum((o.costs.naive for o in outcomes if o.costs), Decimal(0))
    assert saved == naive - cost
    # The daily rollup holds the same sums; the peaks count the jobs for their tenant and for
    # every tenant, in each grouping.
    daily = db.execute(select(func.sum(CostDayRollup.completed), func.sum(CostDayRollup.cost_usd)))
    assert tuple(daily.one()) == (5, cost)
    minutes = [CostPeak.__table__.c[name] for name in MINUTE_COLUMNS]
    rows = db.execute(select(CostPeak.tenant_id, CostPeak.dimension, *minutes)).all()
    for owner in (tenant[0].id, EVERY_TENANT):
        for dimension in ("all", "model", "mode"):
            counted = sum(sum(row[2:]) for row in rows if row[:2] == (owner, dimension))
            assert counted == 5, (owner, dimension)
    buckets = db.execute(select(*(CostRollup.__table__.c[c] for c in histogram.COLUMNS))).one()
    assert sum(buckets) == 5


def test_a_transition_run_twice_counts_each_job_once(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    jobs = submitted_jobs(db, tenant[0], 3)
    outcomes = [outcome(job) for job in jobs]
    transitions.apply_results(db, outcomes, from_state=JobState.submitted)
    db.commit()
    before = rollup_totals(db)
    # A re-poll applies the same results again: the jobs are no longer submitted.
    transitions.apply_results(db, outcomes, from_state=JobState.submitted)
    # And the ledger itself refuses a second record of a job.
    ended = [
        ledger_service.EndedJob(
            job_id=job.id,
            tenant_id=tenant[0].id,
            group_id=None,
            state="completed",
            provider="openai",
            model="gpt-4o-mini",
            mode="batch",
            usage=ledger_service.TokenUsage(1000, 200),
            costs=outcomes[0].costs,
            created_at=utcnow(),
            ended_at=utcnow(),
            deadline=None,
        )
        for job in jobs
    ]
    ledger_service.record(db, ended)
    db.commit()
    assert db.scalar(select(func.count()).select_from(CostRecord)) == 3
    assert rollup_totals(db) == before


def test_a_cancelled_job_records_no_cost_and_its_late_result_is_not_counted(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    jobs = submitted_jobs(db, tenant[0], 2)
    assert transitions.cancel_one(db, tenant_id=tenant[0].id, job_id=jobs[0].id, now=utcnow())
    db.commit()
    transitions.apply_results(db, [outcome(j) for j in jobs], from_state=JobState.submitted)
    db.commit()
    states = dict(db.execute(select(CostRecord.job_id, CostRecord.state)).all())
    assert states == {jobs[0].id: "cancelled", jobs[1].id: "completed"}
    row = db.execute(select(func.sum(CostRollup.cancelled), func.sum(CostRollup.completed))).one()
    assert tuple(row) == (1, 1)
    cancelled = db.get(CostRecord, jobs[0].id)
    assert cancelled is not None
    assert cancelled.actual_usd == 0
    assert cancelled.naive_usd == 0


def test_cost_records_are_immutable(db: Session, tenant: tuple[Tenant, str]) -> None:
    jobs = submitted_jobs(db, tenant[0], 1)
    transitions.apply_results(db, [outcome(jobs[0])], from_state=JobState.submitted)
    db.commit()
    with pytest.raises(DBAPIError, match="immutable"):
        db.execute(text("UPDATE cost_records SET actual_usd = 0"))
    db.rollback()


def test_a_rolled_back_end_leaves_no_record_and_no_metric(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    def finished() -> float:
        value = REGISTRY.get_sample_value(
            "thrifty_jobs_finished_total",
            {"state": "completed", "model": "gpt-4o-mini", "mode": "batch"},
        )
        return value or 0.0

    jobs = submitted_jobs(db, tenant[0], 2)
    start = finished()
    transitions.apply_results(db, [outcome(j) for j in jobs], from_state=JobState.submitted)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(CostRecord)) == 0
    assert finished() == start
    transitions.apply_results(db, [outcome(j) for j in jobs], from_state=JobState.submitted)
    db.commit()
    assert finished() == start + 2


def _record(tenant: Tenant, ended_at: datetime, actual: str) -> ledger_service.EndedJob:
    amount = Decimal(actual)
    costs = ledger_service.CostChain(amount * 10, amount * 2, amount, amount, amount)
    return ledger_service.EndedJob(
        job_id=uuid.uuid4(), tenant_id=tenant.id, group_id=None, state="completed",
        provider="openai", model="gpt-4o-mini", mode="batch",
        usage=ledger_service.TokenUsage(10, 2), costs=costs,
        created_at=ended_at - timedelta(seconds=30), ended_at=ended_at, deadline=None,
    )  # fmt: skip


def test_spent_usd_counts_whole_hours_and_the_partial_first_hour(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    other, _ = tenant_and = (tenant[0], None)
    del tenant_and
    hour = datetime(2026, 11, 30, 10, tzinfo=UTC)
    ledger_service.record(
        db,
        [
            _record(other, hour + timedelta(minutes=5), "0.100000000001"),
            _record(other, hour + timedelta(minutes=40), "0.200000000002"),
            _record(other, hour + timedelta(hours=1, minutes=1), "0.300000000003"),
            _record(other, hour + timedelta(hours=5), "0.400000000004"),
        ],
    )
    db.commit()
    spent = ledger_service.spent_usd
    assert spent(db, tenant_id=other.id, since=hour) == Decimal("1.000000000010")
    assert spent(db, tenant_id=other.id, since=hour + timedelta(minutes=30)) == Decimal(
        "0.900000000009"
    )
    assert spent(db, tenant_id=other.id, since=hour + timedelta(hours=1, minutes=2)) == Decimal(
        "0.400000000004"
    )
    assert spent(db, tenant_id=uuid.uuid4(), since=hour) == 0
    # From a day's start (a budget's period): the day rollups; from a day before, too.
    day = hour.replace(hour=0)
    assert spent(db, tenant_id=other.id, since=day) == Decimal("1.000000000010")
    assert spent(db, tenant_id=other.id, since=day + timedelta(days=1)) == 0
    assert spent(db, tenant_id=other.id, since=day - timedelta(hours=3, minutes=1)) == Decimal(
        "1.000000000010"
    )


def test_failed_jobs_are_recorded_at_no_cost(db: Session, tenant: tuple[Tenant, str]) -> None:
    jobs = submitted_jobs(db, tenant[0], 2)
    transitions.fail(
        db, job_ids=[j.id for j in jobs], error="boom", at=utcnow(), from_state=JobState.submitted
    )
    db.commit()
    records = db.scalars(select(CostRecord)).all()
    assert {(r.state, r.actual_usd, r.latency_seconds) for r in records} == {("failed", 0, None)}
    assert db.scalar(select(func.sum(CostRollup.failed))) == 2
