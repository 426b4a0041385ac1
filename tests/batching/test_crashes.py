"""Durability with real processes: workers SIGKILLed mid-submit and mid-batch, two workers
(each with its own beat) at once, and a Redis restart mid-run. Each run ends with every job
in exactly one terminal state and every request sent to the simulator in exactly one batch."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.kit import queue
from app.kit.db import get_sessionmaker
from app.kit.queue import QUEUES
from app.models import BatchState, Job, JobState, ProviderBatch, Tenant
from app.stack.processes import Child, Supervisor, http_ok, wait_until
from tests.batching.helpers import assert_all_terminal, eventually, simulator_requests
from tests.conftest import REDIS_URL, ROOT, TEST_HOME, free_port
from tests.factories import make_job


@pytest.fixture
def procs(database: str, broker: str) -> Iterator[Supervisor]:
    """A supervisor of this test's own processes (simulator, workers, Redis)."""
    name = uuid.uuid4().hex[:6]
    sup = Supervisor(TEST_HOME / "run" / f"crash-{name}.json", TEST_HOME / "logs")
    yield sup
    sup.stop_all()


def start_simulator(sup: Supervisor, *flags: str) -> str:
    port = free_port()
    argv = [sys.executable, "-m", "app.cli", "simulator", "--port", str(port), *flags]
    sup.start(f"crash-sim-{port}", argv, env=dict(os.environ), cwd=ROOT)
    wait_until(
        lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        timeout=30,
        what="simulator",
        on_poll=sup.check_alive,
    )
    return f"http://127.0.0.1:{port}/v1"


def start_worker(
    sup: Supervisor,
    name: str,
    *,
    simulator: str,
    redis_url: str = REDIS_URL,
    env: dict[str, str] | None = None,
) -> Child:
    """A Celery worker with its own embedded beat, as `thrifty up` runs it."""
    env = dict(
        os.environ, THRIFTY_OPENAI_BASE_URL=simulator, THRIFTY_REDIS_URL=redis_url, **(env or {})
    )
    schedule = TEST_HOME / "run" / f"beat-{name}"
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-B",
            "-s", str(schedule), "-Q", ",".join(QUEUES), "-c", "2",
            "-n", f"{name}@%h", "--loglevel", "INFO"]  # fmt: skip
    child = sup.start(name, argv, env=env, cwd=ROOT)
    client = Celery(broker=redis_url)

    def answers() -> bool:
        try:
            replies = client.control.ping(timeout=1.0) or []
        except (OSError, KombuError, RedisError):  # a pooled connection to a restarted Redis
            return False
        return any(key.startswith(f"{name}@") for reply in replies for key in reply)

    wait_until(answers, timeout=90, what=f"worker {name}", on_poll=sup.check_alive)
    return child


def kill(sup: Supervisor, child: Child) -> None:
    """SIGKILL the worker's whole process group: no shutdown, no acks, no cleanup."""
    os.killpg(child.pid, signal.SIGKILL)
    sup.stop(child)


def queued_jobs(db: Session, tenant: Tenant, count: int) -> list[uuid.UUID]:
    """Committed queued jobs; their ingest hint is dropped, so only the sweeper finds them."""
    ids = []
    for i in range(count):
        # Already stale, all alike: the first sweep takes them all into one ingest.
        job = make_job(
            db,
            tenant=tenant,
            prompt=f"Crash test {i}: {uuid.uuid4().hex}?",
            updated_ago=timedelta(seconds=30),
        )
        job.cache_mode = "bypass"
        ids.append(job.id)
    db.commit()
    return ids


def waiting_jobs(db: Session, tenant: Tenant, count: int) -> list[uuid.UUID]:
    """Committed jobs already routed and due in one window: the first collect claims them all
    into one batch, whatever the timing of ingest on a busy machine."""
    ids = [
        make_job(
            db,
            tenant=tenant,
            prompt=f"Crash test {i}: {uuid.uuid4().hex}?",
            state=JobState.waiting,
            routed_ago=timedelta(seconds=30),
        ).id
        for i in range(count)
    ]
    db.commit()
    return ids


def calls(simulator: str, key: str) -> int:
    body = httpx.get(simulator.removesuffix("/v1") + "/_simulator/calls").json()
    return int(body.get(key, 0))


def fault(simulator: str, **spec: object) -> None:
    response = httpx.post(simulator.removesuffix("/v1") + "/_simulator/faults", json=spec)
    response.raise_for_status()


def assert_accounted(db: Session, simulator: str, ids: list[uuid.UUID]) -> None:
    """Every job completed exactly once, every request sent in exactly one batch."""
    found = assert_all_terminal(db, ids)
    assert set(found.values()) == {JobState.completed}
    sent = simulator_requests(simulator)
    assert {uuid.UUID(i) for i in sent} == set(ids)
    assert set(sent.values()) == {1}, {i: n for i, n in sent.items() if n > 1}
    live = db.scalar(
        select(func.count()).where(
            ProviderBatch.state.in_([BatchState.pending, BatchState.submitted])
        )
    )
    assert live == 0


def all_ended(db: Session, ids: list[uuid.UUID]) -> bool:
    db.expire_all()
    ended = db.scalar(
        select(func.count()).where(
            Job.id.in_(ids),
            Job.state.in_([JobState.completed, JobState.failed, JobState.cancelled]),
        )
    )
    return ended == len(ids)


def test_a_worker_killed_after_the_provider_accepted_its_batch_is_adopted_not_resent(
    procs: Supervisor, db: Session, tenant: tuple[Tenant, str]
) -> None:
    simulator = start_simulator(procs, "--validating-seconds", "0.1", "--processing-seconds", "0.3")
    # The upload is held 2 s, long enough for this test to lock one of the batch's jobs: the
    # worker then creates the batch at the provider and blocks recording it. Killed there, it
    # leaves a batch the provider holds and our database does not know about.
    fault(simulator, path_prefix="/v1/files", delay_seconds=2)
    first = start_worker(procs, "adopt-a", simulator=simulator)
    ids = waiting_jobs(db, tenant[0], 20)
    eventually(lambda: calls(simulator, "POST /v1/files") >= 1, what="the upload")
    locker = get_sessionmaker()()
    try:
        claimed = select(Job.id).where(Job.id.in_(ids), Job.state == JobState.batched)
        assert locker.execute(claimed.limit(1).with_for_update()).first() is not None
        eventually(lambda: calls(simulator, "POST /v1/batches") >= 1, what="the batch create")
        time.sleep(0.5)  # the answer reaches the worker, which waits on our lock
        kill(procs, first)
    finally:
        locker.rollback()
        locker.close()
    db.expire_all()
    (batch,) = db.scalars(select(ProviderBatch)).all()
    assert batch.state == BatchState.pending
    assert batch.external_id is None

    start_worker(procs, "adopt-b", simulator=simulator)
    eventually(lambda: all_ended(db, ids), timeout=90, what="jobs to end after the restart")

    assert_accounted(db, simulator, ids)
    # Found by its metadata tag and adopted: nothing was uploaded or created a second time.
    assert calls(simulator, "POST /v1/files") == 1
    assert calls(simulator, "POST /v1/batches") == 1
    db.expire_all()
    db.refresh(batch)
    assert batch.state == BatchState.completed
    assert batch.external_id is not None


def test_a_worker_killed_mid_submit_loses_nothing_and_sends_nothing_twice(
    procs: Supervisor, db: Session, tenant: tuple[Tenant, str]
) -> None:
    simulator = start_simulator(procs, "--validating-seconds", "0.1", "--processing-seconds", "0.3")
    # The create (POST /v1/batches) hangs 3 s and the worker dies while it is in flight.
    # Whether the provider completes the abandoned create (then it is adopted) or not (then
    # it is sent again), each request goes out once. The first attempt does not look the batch
    # up (nothing can have reached the provider before it); the second must.
    fault(simulator, path_prefix="/v1/batches", delay_seconds=3)
    first = start_worker(procs, "crash-a", simulator=simulator)
    ids = waiting_jobs(db, tenant[0], 30)

    eventually(lambda: calls(simulator, "POST /v1/batches") >= 1, what="batch create call")
    kill(procs, first)
    (batch,) = db.scalars(select(ProviderBatch)).all()
    assert batch.state == BatchState.pending  # the claim committed; the submit never did
    assert batch.external_id is None
    assert batch.submit_attempts == 1  # counted before the provider call
    assert calls(simulator, "GET /v1/batches") == 0

    start_worker(procs, "crash-b", simulator=simulator)
    eventually(lambda: all_ended(db, ids), timeout=90, what="jobs to end after the restart")
    assert calls(simulator, "GET /v1/batches") >= 1  # the second attempt looked it up

    assert_accounted(db, simulator, ids)
    db.expire_all()
    batches = db.scalars(select(ProviderBatch)).all()
    assert [b.state for b in batches] == [BatchState.completed]


def test_a_worker_killed_while_its_batch_is_at_the_provider_loses_nothing(
    procs: Supervisor, db: Session, tenant: tuple[Tenant, str]
) -> None:
    simulator = start_simulator(procs, "--validating-seconds", "0.1", "--processing-seconds", "4")
    first = start_worker(procs, "crash-c", simulator=simulator)
    ids = queued_jobs(db, tenant[0], 30)

    def submitted() -> bool:
        db.expire_all()
        return bool(db.scalar(select(func.count()).where(Job.state == JobState.submitted)))

    eventually(submitted, what="a submitted batch")
    kill(procs, first)

    start_worker(procs, "crash-d", simulator=simulator)
    eventually(lambda: all_ended(db, ids), timeout=90, what="jobs to end after the restart")
    assert_accounted(db, simulator, ids)


def test_two_worker_processes_with_two_beats_never_duplicate_a_job(
    procs: Supervisor, db: Session, tenant: tuple[Tenant, str]
) -> None:
    simulator = start_simulator(procs, "--validating-seconds", "0", "--processing-seconds", "0.2")
    start_worker(procs, "twin-a", simulator=simulator)
    start_worker(procs, "twin-b", simulator=simulator)
    ids = queued_jobs(db, tenant[0], 400)

    eventually(lambda: all_ended(db, ids), timeout=120, what="jobs to end")
    assert_accounted(db, simulator, ids)


def test_a_redis_restart_mid_run_loses_nothing(
    procs: Supervisor, db: Session, tenant: tuple[Tenant, str]
) -> None:
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no"]  # fmt: skip
    data = TEST_HOME / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)

    def start_redis() -> Child:
        child = procs.start(f"redis-{port}", argv, env=dict(os.environ), cwd=data)
        wait_until(lambda: _answers(redis_url), timeout=20, what="redis", on_poll=procs.check_alive)
        return child

    server = start_redis()
    simulator = start_simulator(procs, "--validating-seconds", "0.1", "--processing-seconds", "2")
    worker = start_worker(procs, "redis-a", simulator=simulator, redis_url=redis_url)
    ids = queued_jobs(db, tenant[0], 60)

    def moving() -> bool:
        db.expire_all()
        return bool(db.scalar(select(func.count()).where(Job.state != JobState.queued)))

    eventually(moving, what="ingest to start")
    procs.stop(server)  # every message in flight is gone with it (no persistence)
    time.sleep(1)
    start_redis()

    # A worker holding an unacknowledged message when the broker vanishes can exit on a kombu
    # bug (restoring the message on the closed connection: "Unrecoverable error:
    # AttributeError ... 'hostname'"). Deployments restart it (docker-compose: restart:
    # unless-stopped), and so does this test; either way no job may be lost or sent twice.
    replaced: list[Child] = []

    def ended() -> bool:
        if not replaced and procs.exited(worker):
            procs.stop(worker)
            replacement = start_worker(procs, "redis-b", simulator=simulator, redis_url=redis_url)
            replaced.append(replacement)
        return all_ended(db, ids)

    eventually(ended, timeout=120, what="jobs to end after the restart")
    assert_accounted(db, simulator, ids)


def test_a_worker_that_starts_re_drives_work_whose_hints_were_lost_at_once(
    procs: Supervisor, db: Session, tenant: tuple[Tenant, str]
) -> None:
    """A worker replacing one that was SIGKILLed holding messages (acked late: the broker
    gives them back only after its visibility timeout) re-drives everything when it starts,
    instead of leaving it to the sweeper's stale timeout: here an hour, and no periodic
    sweep in the run, so only the start's re-drive can move these jobs, whose hints are gone."""
    queue.mark_broker()  # the broker lost nothing: not the broker-loss re-drive
    ids = []
    for i in range(20):
        job = make_job(db, tenant=tenant[0], prompt=f"Lost hint {i}: {uuid.uuid4().hex}?")
        job.cache_mode = "bypass"
        ids.append(job.id)
    db.commit()
    simulator = start_simulator(procs, "--validating-seconds", "0.1", "--processing-seconds", "1")
    hour = {"THRIFTY_STALE_AFTER_SECONDS": "3600", "THRIFTY_SWEEP_INTERVAL_SECONDS": "3600"}
    start_worker(procs, "redrive", simulator=simulator, env=hour)

    eventually(lambda: all_ended(db, ids), timeout=120, what="the re-driven jobs to end")
    assert_accounted(db, simulator, ids)


def _answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False
