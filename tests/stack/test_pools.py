"""Stages do not starve each other: with the worker pools `thrifty up` runs (one per group of
queues, app/kit/queue.py POOLS), an ingest pool held up by bulk work does not delay a batch's
collect, submission, poll and results by a second; and with the collect pool down, the poll
pool still collects."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import pytest
from celery import Celery
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.kit import queue
from app.kit.db import get_engine
from app.models import Job, JobState, Tenant
from app.stack.processes import Supervisor, wait_until
from tests.batching.helpers import eventually, waiting_jobs
from tests.conftest import REDIS_URL, ROOT, TEST_HOME
from tests.factories import make_job


@pytest.fixture
def pools(database: str, broker: str, simulator: str) -> Iterator[Supervisor]:
    """One worker per pool, as `thrifty up` starts them (one process each), beat in the first."""
    sup = Supervisor(TEST_HOME / "run" / f"pools-{uuid.uuid4().hex[:6]}.json", TEST_HOME / "logs")
    env = dict(os.environ, THRIFTY_OPENAI_BASE_URL=simulator)
    names = []
    for index, pool in enumerate(queue.POOLS):
        name = f"pool-{pool.name}-{uuid.uuid4().hex[:4]}"
        beat = ["-B", "-s", str(TEST_HOME / "run" / f"beat-{name}")] if index == 0 else []
        argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", *beat,
                "-Q", ",".join(pool.queues), "-c", "1", "-P", pool.kind, "-n", f"{name}@%h",
                "--loglevel", "INFO"]  # fmt: skip
        sup.start(name, argv, env=env, cwd=ROOT)
        names.append(name)
    client = Celery(broker=REDIS_URL)

    def all_answer() -> bool:
        replies = client.control.ping(timeout=1.0) or []
        seen = {key.split("@")[0] for reply in replies for key in reply}
        return set(names) <= seen

    wait_until(all_answer, timeout=120, what="the pools' workers", on_poll=sup.check_alive)
    yield sup
    sup.stop_all()


def test_a_held_up_ingest_pool_does_not_delay_collect_submit_and_poll(
    pools: Supervisor, db: Session, tenant: tuple[Tenant, str]
) -> None:
    assert not any(
        {"ingest"} & set(pool.queues) and set(pool.queues) - {"ingest"} for pool in queue.POOLS
    ), "ingest shares a pool with another stage"
    queued = [make_job(db, tenant=tenant[0]) for _ in range(4)]
    db.commit()
    with get_engine().connect() as blocker:
        # Ingest's cache lookup waits on this lock: the ingest pool is busy for as long as we
        # hold it, as it is under a bulk load of embeddings.
        blocker.execute(text("LOCK TABLE cache_entries IN ACCESS EXCLUSIVE MODE"))
        for job in queued:
            queue.send_now(queue.INGEST, [str(job.id)])
        ready = waiting_jobs(db, tenant[0], 5)  # routed, due, skipping the cache

        def completed() -> bool:
            db.expire_all()
            found = db.scalars(select(Job.state).where(Job.id.in_([j.id for j in ready])))
            return set(found) == {JobState.completed}

        eventually(completed, timeout=90, what="the batch completed while ingest was held up")
        db.expire_all()
        states = set(db.scalars(select(Job.state).where(Job.id.in_([j.id for j in queued]))))
        assert states == {JobState.queued}  # ingest really was held up all along
        blocker.rollback()

    def ingested() -> bool:
        db.expire_all()
        found = db.scalars(select(Job.state).where(Job.id.in_([j.id for j in queued])))
        return JobState.queued not in set(found)

    eventually(ingested, timeout=90, what="ingest went on once released")


def test_with_the_collect_pool_down_the_poll_pool_still_collects(
    database: str, broker: str, simulator: str, db: Session, tenant: tuple[Tenant, str]
) -> None:
    """`worker` (collect, submissions) restarting, or dead: the poll pool serves the collect
    ticks and sweeps too, so due windows are still claimed into batches (their submissions
    wait for `worker`: they may wait out a provider's rate limit, never on the poll pool)."""
    (poll_pool,) = [pool for pool in queue.POOLS if pool.name == "worker-poll"]
    assert queue.TASK_QUEUES[queue.SUBMIT_BATCH] not in poll_pool.queues
    sup = Supervisor(TEST_HOME / "run" / f"poll-{uuid.uuid4().hex[:6]}.json", TEST_HOME / "logs")
    name = f"only-poll-{uuid.uuid4().hex[:4]}"
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-B",
            "-s", str(TEST_HOME / "run" / f"beat-{name}"), "-Q", ",".join(poll_pool.queues),
            "-c", "1", "-n", f"{name}@%h", "--loglevel", "INFO"]  # fmt: skip
    env = dict(os.environ, THRIFTY_OPENAI_BASE_URL=simulator)
    try:
        sup.start(name, argv, env=env, cwd=ROOT)
        ready = waiting_jobs(db, tenant[0], 3)  # routed and due

        def claimed() -> bool:
            db.expire_all()
            found = db.scalars(select(Job.state).where(Job.id.in_([j.id for j in ready])))
            return set(found) == {JobState.batched}

        eventually(claimed, timeout=90, what="the poll pool to collect the due window")
    finally:
        sup.stop_all()
