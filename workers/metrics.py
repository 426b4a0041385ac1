"""Celery task durations by task and outcome, from the task signals (as sentry's
``instrumented_task`` times its tasks): ``task_prerun`` starts the clock, ``task_postrun``
observes it. In the stack the worker's processes write to the multiprocess directory the
operator metrics server reads (app/metrics.py)."""

from __future__ import annotations

import time
from typing import Any

from celery.signals import task_postrun, task_prerun
from prometheus_client import Histogram

TASK_DURATION = Histogram(
    "thrifty_celery_task_duration_seconds",
    "Celery task run time by task and state (SUCCESS, FAILURE, RETRY)",
    ["task", "state"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
_started: dict[str, float] = {}


@task_prerun.connect
def _start(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@task_postrun.connect
def _stop(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id or "", None)
    if started is None or task is None:
        return
    TASK_DURATION.labels(getattr(task, "name", "unknown"), state or "UNKNOWN").observe(
        time.perf_counter() - started
    )
