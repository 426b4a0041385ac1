"""Ingest is shared fairly across tenants: a small tenant's jobs are ingested ahead of a big
tenant's backlog, whichever tenant's hint a worker takes. The ingest task runs in this
process against the real database; the jobs skip the cache, so no embedding is computed."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any, NoReturn

import psycopg
import pytest
import sqlalchemy.exc
from celery.exceptions import Retry
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.intake import fair_ingest
from app.models import CacheMode, Job, JobState, Tenant
from tests.conftest import make_tenant
from tests.factories import make_job
from workers import tasks


def queued(db: Session, tenant: Tenant, count: int, *, age: timedelta) -> list[Job]:
    """``count`` queued jobs of ``tenant`` submitted ``age`` ago (the older, the earlier)."""
    jobs = [make_job(db, tenant=tenant) for _ in range(count)]
    db.execute(
        update(Job)
        .where(Job.id.in_([j.id for j in jobs]))
        .values(cache_mode=CacheMode.bypass, created_at=Job.created_at - age)
    )
    db.commit()
    return jobs


def states(db: Session, jobs: list[Job]) -> Counter[JobState]:
    db.expire_all()
    return Counter(db.scalars(select(Job.state).where(Job.id.in_([j.id for j in jobs]))))


def test_the_big_tenants_hint_ingests_the_small_tenants_jobs_first(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    big = tenant[0]
    small, _ = make_tenant(db, name="small")
    backlog = queued(db, big, 300, age=timedelta(minutes=5))  # its hints are first in line
    mine = queued(db, small, 6, age=timedelta(0))

    # The first hint in the queue is one of the big tenant's: it names 40 of its jobs.
    handled = tasks.ingest.run([str(j.id) for j in backlog[:40]])

    assert handled == 40
    assert states(db, mine) == {JobState.waiting: 6}
    assert states(db, backlog) == {JobState.waiting: 34, JobState.queued: 266}
    # The later hints (the rest of the backlog's, then the small tenant's own) go on with the
    # backlog, oldest first: together they cover every job queued, and no more.
    assert tasks.ingest.run([str(j.id) for j in backlog[40:]]) == 260
    assert states(db, backlog) == {JobState.waiting: 294, JobState.queued: 6}
    assert tasks.ingest.run([str(j.id) for j in mine]) == 6
    assert states(db, backlog) == {JobState.waiting: 300}
    assert tasks.ingest.run([str(j.id) for j in backlog[:10]]) == 0


def test_a_claim_shares_by_weight_and_skips_rows_another_process_holds(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    light = tenant[0]
    heavy, _ = make_tenant(db, name="heavy")
    heavy.share_weight = 3
    db.commit()
    light_jobs = queued(db, light, 50, age=timedelta(minutes=1))
    heavy_jobs = queued(db, heavy, 50, age=timedelta(0))

    with db.get_bind().connect() as other:  # type: ignore[union-attr]
        # Another ingest process holds the light tenant's 5 oldest jobs.
        held = [j.id for j in light_jobs[:5]]
        other.execute(select(Job.id).where(Job.id.in_(held)).with_for_update()).all()
        claimed = fair_ingest.claim_fairly(db, limit=20)
        other.rollback()
    db.rollback()

    # A share of 3 to 1; the light tenant's share is its next 5 jobs, oldest first.
    assert set(claimed) == {j.id for j in heavy_jobs[:15]} | {j.id for j in light_jobs[5:10]}
    assert len(claimed) == 20

    # Only queued jobs are claimed: a tenant with nothing queued gets no share.
    db.execute(update(Job).where(Job.tenant_id == heavy.id).values(state=JobState.cancelled))
    db.commit()
    assert set(fair_ingest.claim_fairly(db, limit=100)) == {j.id for j in light_jobs}
    db.rollback()
    assert fair_ingest.ingest_next(db, limit=100, catalog=get_catalog()) == 50


def test_a_deadlocked_step_retries_the_hint_instead_of_dropping_it(
    db: Session, tenant: tuple[Tenant, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two ingest processes writing the same ledger rows can deadlock; Postgres aborts one.
    jobs = queued(db, tenant[0], 3, age=timedelta(0))
    asked: list[dict[str, Any]] = []

    def retry(**options: Any) -> Retry:
        asked.append(options)
        return Retry("retry recorded", options.get("exc"))

    def deadlocked(*args: Any, **kwargs: Any) -> NoReturn:
        orig = psycopg.errors.DeadlockDetected("deadlock detected")
        raise sqlalchemy.exc.OperationalError("INSERT ...", {}, orig)

    monkeypatch.setattr(tasks.ingest, "retry", retry)
    monkeypatch.setattr(fair_ingest, "ingest_next", deadlocked)
    with pytest.raises(Retry):
        tasks.ingest([str(j.id) for j in jobs])
    assert len(asked) == 1
    assert states(db, jobs) == {JobState.queued: 3}  # nothing half-done; the retry ingests
