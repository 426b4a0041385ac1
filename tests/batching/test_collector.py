"""The collector against the real Postgres: windows flush when full or old, never mixing models,
and concurrent collectors never put a job into two batches."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.batching import collector
from app.catalog.catalog import Catalog, get_catalog
from app.kit import queue
from app.kit.db import get_sessionmaker
from app.models import BatchState, Job, JobState, ProviderBatch, Tenant, utcnow
from tests.factories import make_job

MINI = "gpt-4o-mini"
PREMIUM = "gpt-4o"
DUE = timedelta(seconds=5)  # well past the test catalog's max_wait_seconds = 0.5


def with_max_size(catalog: Catalog, size: int) -> Catalog:
    """A copy of ``catalog`` whose every model flushes at ``size`` jobs."""
    return catalog.model_copy(
        update={"models": [m.model_copy(update={"max_size": size}) for m in catalog.models]}
    )


def batches(db: Session) -> list[ProviderBatch]:
    return list(db.scalars(select(ProviderBatch).order_by(ProviderBatch.created_at)))


def jobs_of(db: Session, batch_id: uuid.UUID) -> list[Job]:
    return list(db.scalars(select(Job).where(Job.provider_batch_id == batch_id)))


def placement(db: Session, job_id: uuid.UUID) -> tuple[JobState, uuid.UUID | None]:
    """A job's state and batch, read afresh."""
    row = db.execute(select(Job.state, Job.provider_batch_id).where(Job.id == job_id)).one()
    return row.state, row.provider_batch_id


def outbox(db: Session) -> list[queue.Message]:
    return list(db.info.get("thrifty_outbox", []))


def test_a_window_neither_full_nor_old_is_not_flushed(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    catalog = get_catalog()
    assert catalog.model(MINI).max_wait_seconds == 0.5
    jobs = [make_job(db, tenant=tenant[0], state=JobState.waiting) for _ in range(3)]
    db.commit()

    assert collector.collect(db, catalog=catalog) == []
    db.commit()

    assert batches(db) == []
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.waiting
        assert job.provider_batch_id is None

    # The same window, looked at once its oldest job has waited max_wait, flushes.
    later = utcnow() + timedelta(seconds=1)
    created = collector.collect(db, catalog=catalog, now=later)
    db.commit()
    assert len(created) == 1
    (batch,) = batches(db)
    assert batch.id == created[0]
    assert batch.request_count == 3
    assert {j.id for j in jobs_of(db, batch.id)} == {j.id for j in jobs}


def test_an_old_window_flushes_into_one_pending_batch(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    catalog = get_catalog()
    jobs = [
        make_job(db, tenant=tenant[0], state=JobState.waiting, routed_ago=DUE) for _ in range(4)
    ]
    db.commit()

    created = collector.collect(db, catalog=catalog)
    assert len(created) == 1
    # The submission is enqueued on the session, to be sent once the claim commits.
    assert queue.Message(queue.SUBMIT_BATCH, (str(created[0]),)) in outbox(db)
    db.commit()

    (batch,) = batches(db)
    assert batch.id == created[0]
    assert batch.state == BatchState.pending
    assert (batch.provider, batch.model, batch.mode) == ("openai", MINI, "batch")
    assert batch.request_count == 4
    assert batch.external_id is None
    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.batched
        assert job.provider_batch_id == batch.id

    # Nothing is left to flush.
    assert collector.collect(db, catalog=catalog) == []


def test_a_full_window_flushes_at_once_in_batches_of_max_size(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    catalog = with_max_size(get_catalog(), 3)
    # Fresh jobs (not due), oldest first: the two full batches take the six oldest.
    jobs = [
        make_job(
            db,
            tenant=tenant[0],
            state=JobState.waiting,
            routed_ago=timedelta(milliseconds=100 - 10 * i),
        )
        for i in range(7)
    ]
    db.commit()

    created = collector.collect(db, catalog=catalog)
    db.commit()

    assert len(created) == 2
    found = batches(db)
    assert sorted(b.request_count for b in found) == [3, 3]
    claimed = {j.id for b in found for j in jobs_of(db, b.id)}
    assert claimed == {j.id for j in jobs[:6]}
    newest = jobs[6].id
    assert placement(db, newest) == (JobState.waiting, None)

    # The remainder waits until it is due, then flushes on its own.
    assert collector.collect(db, catalog=catalog) == []
    later = collector.collect(db, catalog=catalog, now=utcnow() + timedelta(seconds=1))
    db.commit()
    assert len(later) == 1
    assert placement(db, newest) == (JobState.batched, later[0])
    remainder = db.get(ProviderBatch, later[0])
    assert remainder is not None
    assert remainder.request_count == 1


def test_windows_are_per_model_and_never_mixed(db: Session, tenant: tuple[Tenant, str]) -> None:
    catalog = get_catalog()
    minis = [
        make_job(db, tenant=tenant[0], state=JobState.waiting, model=MINI, routed_ago=DUE)
        for _ in range(3)
    ]
    premiums = [
        make_job(db, tenant=tenant[0], state=JobState.waiting, model=PREMIUM, routed_ago=DUE)
        for _ in range(2)
    ]
    db.commit()

    created = collector.collect(db, catalog=catalog)
    db.commit()

    assert len(created) == 2
    by_model = {b.model: b for b in batches(db)}
    assert set(by_model) == {MINI, PREMIUM}
    for model, expected in ((MINI, minis), (PREMIUM, premiums)):
        batch = by_model[model]
        members = jobs_of(db, batch.id)
        assert {j.id for j in members} == {j.id for j in expected}
        assert {j.model for j in members} == {model}
        assert batch.request_count == len(expected)


def test_only_waiting_jobs_are_ever_claimed(db: Session, tenant: tuple[Tenant, str]) -> None:
    catalog = get_catalog()
    others = {
        state: make_job(db, tenant=tenant[0], state=state, routed_ago=DUE)
        for state in (
            JobState.queued,
            JobState.completed,
            JobState.failed,
            JobState.cancelled,
            JobState.submitted,
        )
    }
    waiting = make_job(db, tenant=tenant[0], state=JobState.waiting, routed_ago=DUE)
    db.commit()

    created = collector.collect(db, catalog=catalog, now=utcnow() + timedelta(hours=1))
    db.commit()

    assert len(created) == 1
    (batch,) = batches(db)
    assert batch.request_count == 1
    assert [j.id for j in jobs_of(db, batch.id)] == [waiting.id]
    for state, job in others.items():
        db.refresh(job)
        assert job.state == state
        assert job.provider_batch_id is None

    # With only non-waiting jobs left, collecting again claims nothing.
    assert collector.collect(db, catalog=catalog, now=utcnow() + timedelta(hours=1)) == []


def test_concurrent_collectors_put_every_job_in_exactly_one_batch(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    total, size = 2_000, 100
    catalog = with_max_size(get_catalog(), size)
    routed_at = utcnow() - DUE
    db.execute(
        insert(Job),
        [
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant[0].id,
                "prompt": f"question {i}",
                "state": JobState.waiting,
                "job_metadata": {},
                "provider": "openai",
                "model": MINI,
                "mode": "batch",
                # Distinct times, so oldest-first claiming is well defined.
                "routed_at": routed_at + timedelta(microseconds=i),
            }
            for i in range(total)
        ],
    )
    db.commit()

    barrier = threading.Barrier(2)
    results: dict[int, list[uuid.UUID]] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        session = get_sessionmaker()()
        try:
            barrier.wait(timeout=10)
            results[n] = collector.collect(session, catalog=catalog)
            session.commit()
        except BaseException as exc:
            errors.append(exc)
            session.rollback()
        finally:
            session.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)

    created = results[0] + results[1]
    assert len(created) == len(set(created)), "a batch id was returned twice"
    found = batches(db)
    assert {b.id for b in found} == set(created)
    assert sum(b.request_count for b in found) == total
    assert all(0 < b.request_count <= size for b in found)

    rows = db.execute(select(Job.id, Job.state, Job.provider_batch_id)).all()
    assert len(rows) == total
    assert Counter(r.id for r in rows).most_common(1)[0][1] == 1
    assert {r.state for r in rows} == {JobState.batched}
    assert all(r.provider_batch_id is not None for r in rows)
    per_batch = Counter(r.provider_batch_id for r in rows)
    assert per_batch == {b.id: b.request_count for b in found}
    assert db.scalar(select(func.count()).where(Job.state == JobState.waiting)) == 0
