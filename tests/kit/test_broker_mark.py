"""The broker's mark: a Redis that lost its queued messages (restarted without persistence,
flushed) has lost the mark too, which tells the sweeper to re-drive everything at once."""

from __future__ import annotations

import uuid

import pytest
import redis

from app.config import get_settings
from app.kit import queue
from tests.conftest import free_port


def test_a_broker_that_lost_its_messages_has_lost_the_mark(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mark of this test's own: a worker of another test may sweep (and mark) meanwhile.
    monkeypatch.setattr(queue, "BROKER_MARK", f"thrifty:broker:mark:{uuid.uuid4().hex}")
    assert queue.broker_lost_messages()  # never marked: as after a restart
    queue.mark_broker()
    assert not queue.broker_lost_messages()
    assert not queue.broker_lost_messages()  # asking does not change it

    redis.Redis.from_url(broker).flushdb()  # what a Redis restarted without persistence holds
    assert queue.broker_lost_messages()


def test_a_broker_that_does_not_answer_reads_as_not_lost(
    broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = get_settings().model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    monkeypatch.setattr(queue, "get_settings", lambda: down)
    assert not queue.broker_lost_messages()  # asked again at the next sweep
    queue.mark_broker()  # no error either
