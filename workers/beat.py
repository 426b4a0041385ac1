"""Beat without a backlog: a periodic tick is not sent while an earlier one still waits.

Collect, poll, sweep and webhook-dispatch ticks are hints to look at Postgres, and one
waiting is as good as many. Behind a long ingest on a busy worker Celery beat went on sending
one every interval, and the worker then worked through the pile (each expired one still a
message to receive, check and acknowledge) ahead of real work. ``TickScheduler`` marks each
tick it sends in Redis (``tick:<task>`` = the message's id) and sends the next only once the
mark is gone: cleared when that message starts or is dropped as expired, and after
``TICK_MARK_SECONDS`` anyway (a tick lost with a killed worker must not stop the schedule).
If Redis does not answer, the tick is sent as before.
"""

from __future__ import annotations

import copy
import logging
import uuid
from functools import lru_cache
from typing import Any, cast

import redis
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.signals import task_prerun, task_revoked

from app.config import get_settings

log = logging.getLogger(__name__)

# At most one tick a task this often when its message never starts or ends (a lost message).
TICK_MARK_SECONDS = 60.0
_PREFIX = "thrifty:tick:"
# Delete the mark only if it is still this tick's (a later tick may have replaced it).
_CLEAR = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


@lru_cache
def _redis() -> redis.Redis[bytes]:
    return redis.Redis.from_url(
        get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2
    )


def mark_key(task: str) -> str:
    return _PREFIX + task


def claim_tick(task: str, tick_id: str) -> bool:
    """Whether a tick of ``task`` may be sent now (no earlier one waits); marks it if so."""
    try:
        return bool(_redis().set(mark_key(task), tick_id, nx=True, ex=int(TICK_MARK_SECONDS)))
    except redis.RedisError:
        log.debug("tick mark: Redis did not answer; sending %s anyway", task, exc_info=True)
        return True


def clear_tick(task: str, tick_id: str) -> None:
    """The tick ``tick_id`` of ``task`` started or was dropped: the next may be sent."""
    try:
        cast(Any, _redis()).eval(_CLEAR, 1, mark_key(task), tick_id)  # untyped in redis-py
    except redis.RedisError:
        log.debug("tick mark: Redis did not answer; the mark expires", exc_info=True)


class TickScheduler(PersistentScheduler):
    """Celery's persistent scheduler, skipping a tick while an earlier one of the same task
    waits in the queue (the entry still advances: the next is due an interval later)."""

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        tick_id = str(uuid.uuid4())
        if entry.task is None:
            super().apply_entry(entry, producer=producer)
            return
        if not claim_tick(entry.task, tick_id):
            log.debug("Scheduler: %s still waits; tick skipped", entry.task)
            return
        tick = copy.copy(entry)
        tick.options = {**(entry.options or {}), "task_id": tick_id}
        super().apply_entry(tick, producer=producer)


def _is_tick(app: Any, name: str) -> bool:
    """Whether beat schedules ``name`` (every other task starts without a Redis call)."""
    schedule = app.conf.beat_schedule or {}
    return any(entry.get("task") == name for entry in schedule.values())


@task_prerun.connect
def _tick_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is not None and task_id and _is_tick(task.app, task.name):
        clear_tick(task.name, task_id)


@task_revoked.connect
def _tick_dropped(request: Any = None, **_: Any) -> None:
    # an expired tick is revoked when the worker receives it: the next may be sent
    if request is not None and getattr(request, "id", None) and getattr(request, "task", None):
        clear_tick(request.task, request.id)
