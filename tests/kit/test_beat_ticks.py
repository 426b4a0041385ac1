"""Beat sends no tick while an earlier one of the same task still waits in the queue
(``workers/beat.py``): a worker busy with a long ingest finds one tick, not a pile."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery.beat import ScheduleEntry
from celery.signals import task_prerun, task_revoked
from celery.utils.objects import Bunch

from tests.conftest import free_port
from workers import beat
from workers.celery_app import celery_app


@pytest.fixture
def ticks(
    broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[beat.TickScheduler, ScheduleEntry, str]]:
    """A scheduler and one entry of a task of this test's own (in the beat schedule, as the
    real ticks are), sent to a queue of its own."""
    name = f"thrifty.test_tick_{uuid.uuid4().hex}"
    monkeypatch.setitem(celery_app.conf.beat_schedule, "test-tick", {"task": name, "schedule": 1.0})
    queue_name = f"test-ticks-{uuid.uuid4().hex}"
    scheduler = beat.TickScheduler(
        app=celery_app, schedule_filename=str(tmp_path / "beat"), lazy=True
    )
    entry = ScheduleEntry(
        name="tick", task=name, schedule=1.0, options={"queue": queue_name}, app=celery_app
    )
    yield scheduler, entry, queue_name
    client = redis.Redis.from_url(broker)
    client.delete(queue_name, beat.mark_key(name))


def queued(broker: str, queue_name: str) -> list[str]:
    """The ids of the messages waiting in ``queue_name``."""
    client = redis.Redis.from_url(broker)
    return [json.loads(m)["headers"]["id"] for m in client.lrange(queue_name, 0, -1)]


def test_a_tick_is_not_sent_while_an_earlier_one_waits(
    broker: str, ticks: tuple[beat.TickScheduler, ScheduleEntry, str]
) -> None:
    scheduler, entry, queue_name = ticks
    for _ in range(5):
        scheduler.apply_entry(entry)
    assert len(queued(broker, queue_name)) == 1
    # the mark expires on its own: a tick lost with a killed worker does not stop the schedule
    ttl = redis.Redis.from_url(broker).ttl(beat.mark_key(entry.task or ""))
    assert 0 < ttl <= beat.TICK_MARK_SECONDS


def test_the_next_tick_is_sent_once_the_waiting_one_starts(
    broker: str, ticks: tuple[beat.TickScheduler, ScheduleEntry, str]
) -> None:
    scheduler, entry, queue_name = ticks
    scheduler.apply_entry(entry)
    (first,) = queued(broker, queue_name)
    # another message of the same task starting does not clear the waiting tick's mark
    task = Bunch(name=entry.task, app=celery_app)
    task_prerun.send(sender=task, task_id=str(uuid.uuid4()), task=task)
    scheduler.apply_entry(entry)
    assert queued(broker, queue_name) == [first]
    task_prerun.send(sender=task, task_id=first, task=task)  # as the worker starts it
    scheduler.apply_entry(entry)
    assert len(queued(broker, queue_name)) == 2


def test_the_next_tick_is_sent_once_the_waiting_one_is_dropped_as_expired(
    broker: str, ticks: tuple[beat.TickScheduler, ScheduleEntry, str]
) -> None:
    scheduler, entry, queue_name = ticks
    scheduler.apply_entry(entry)
    (first,) = queued(broker, queue_name)
    request = Bunch(id=first, task=entry.task)
    task_revoked.send(sender=None, request=request, terminated=False, signum=None, expired=True)
    scheduler.apply_entry(entry)
    assert len(queued(broker, queue_name)) == 2


def test_ticks_are_sent_as_before_when_the_mark_cannot_be_read(
    broker: str,
    ticks: tuple[beat.TickScheduler, ScheduleEntry, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scheduler, entry, queue_name = ticks
    down = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    monkeypatch.setattr(beat, "_redis", lambda: down)
    scheduler.apply_entry(entry)
    scheduler.apply_entry(entry)
    assert len(queued(broker, queue_name)) == 2
