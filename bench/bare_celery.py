"""The baseline: bare Celery doing one trivial task per job.

Same broker, serializer and worker settings (late acks, prefetch 1) as Thrifty's own worker
app; the task only counts itself in Redis, so the figure is Celery's per-message cost.
"""

from __future__ import annotations

import os

import redis
from celery import Celery

BROKER = os.environ.get("THRIFTY_REDIS_URL", "redis://127.0.0.1:6379/0")
COUNTER = "bench:bare:done"
QUEUE = "bench-bare"

app = Celery("bench-bare", broker=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
)
_client: redis.Redis | None = None


@app.task(name="bench.noop")
def noop(job: int) -> None:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(BROKER)
    _client.incr(COUNTER)
