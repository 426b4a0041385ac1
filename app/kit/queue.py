"""Enqueueing Celery tasks from the app without importing ``workers``.

Messages are collected on the SQLAlchemy session and sent only after it commits; a rollback
drops them. They are wake-up hints: Postgres holds the state, and the sweeper re-drives
anything whose message was lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.config import get_settings

log = logging.getLogger(__name__)

# Task names and the queue each runs on; the worker app registers the same names.
INGEST = "thrifty.ingest"
COLLECT = "thrifty.collect"
SUBMIT_BATCH = "thrifty.submit_batch"
POLL_BATCHES = "thrifty.poll_batches"
POLL_BATCH = "thrifty.poll_batch"
SWEEP = "thrifty.sweep"
DELIVER_WEBHOOK = "thrifty.deliver_webhook"
DISPATCH_WEBHOOKS = "thrifty.dispatch_webhooks"
START_OPENAI_BATCH = "thrifty.start_openai_batch"

TASK_QUEUES: dict[str, str] = {
    INGEST: "ingest",
    COLLECT: "collect",
    SUBMIT_BATCH: "provider",
    POLL_BATCHES: "poll",
    POLL_BATCH: "poll",
    SWEEP: "collect",
    DELIVER_WEBHOOK: "delivery",
    DISPATCH_WEBHOOKS: "delivery",
    START_OPENAI_BATCH: "ingest",
}
QUEUES = tuple(sorted(set(TASK_QUEUES.values())))


@dataclass(frozen=True)
class Pool:
    """A worker process (and its pool) that serves its own queues, so no stage can take
    another's reserved capacity: bulk ingest never holds the processes polls and submissions
    need, a submission waiting out a provider's rate limit never delays a poll (the poll pool
    serves no submissions), and slow webhook receivers only ever hold delivery threads. The
    collect and poll pools also serve each other's short tasks (collect ticks, sweeps, polls)
    with what they have free, so a restart of either (seconds to tens of seconds on a loaded
    machine) stops neither polls nor the sweeper's re-drive."""

    name: str
    queues: tuple[str, ...]
    concurrency: int
    # ``prefork`` for CPU work (embeddings, applying results); ``threads`` for HTTP waits.
    kind: str = "prefork"


POOLS: tuple[Pool, ...] = (
    Pool("worker", ("collect", "provider", "poll"), 2),
    Pool("worker-poll", ("poll", "collect"), 2),
    Pool("worker-ingest", ("ingest",), 2),
    Pool("worker-delivery", ("delivery",), 16, kind="threads"),
)

_OUTBOX = "thrifty_outbox"
# A key the broker holds for as long as it holds the queued messages: gone, so are they.
BROKER_MARK = "thrifty:broker:mark"


@dataclass(frozen=True)
class Message:
    task: str
    args: tuple[Any, ...]


def celery_app_config() -> dict[str, Any]:
    """Settings shared by the app's sending client and the worker app."""
    settings = get_settings()
    return {
        "broker_url": settings.redis_url,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        # Publishing must not hang an API request when Redis is down: the rows are committed
        # and the sweeper re-drives them.
        "broker_transport_options": {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
    }


@lru_cache
def get_sender() -> Celery:
    app = Celery("thrifty-sender")
    app.conf.update(celery_app_config())
    return app


def _broker() -> redis.Redis[bytes]:
    return redis.Redis.from_url(
        get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2
    )


def broker_lost_messages() -> bool:
    """Whether the broker lost its queued messages since ``mark_broker`` was last called (a
    Redis restarted without persistence, or flushed; also its first start): the mark is gone.
    False when Redis does not answer (ask again later)."""
    try:
        with _broker() as client:
            return not client.exists(BROKER_MARK)
    except redis.RedisError:
        log.debug("broker mark: Redis did not answer", exc_info=True)
        return False


def mark_broker() -> None:
    """Mark the broker, once what it lost was re-driven (see ``broker_lost_messages``)."""
    try:
        with _broker() as client:
            client.set(BROKER_MARK, "1")
    except redis.RedisError:
        log.debug("broker mark: Redis did not answer", exc_info=True)


def enqueue(session: Session, task: str, *args: Any) -> None:
    """Send ``task`` once ``session`` commits; forget it if the session rolls back."""
    session.info.setdefault(_OUTBOX, []).append(Message(task, args))


def send_now(task: str, *args: Any) -> None:
    get_sender().send_task(task, args=list(args))


@event.listens_for(Session, "after_commit")
def _send_outbox(session: Session) -> None:
    messages: list[Message] = session.info.pop(_OUTBOX, [])
    for message in messages:
        try:
            send_now(message.task, *message.args)
        except Exception:
            # The rows are committed; the sweeper notices them and sends the hint again.
            log.warning("could not enqueue %s", message.task, exc_info=True)


@event.listens_for(Session, "after_rollback")
def _drop_outbox(session: Session) -> None:
    session.info.pop(_OUTBOX, None)
