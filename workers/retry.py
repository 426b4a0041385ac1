"""Task retries only for errors a retry can cure, as sentry's ``retry(on=..., exclude=...)``:
a provider or a connection that failed for now. A plain bug fails the task at once; retrying
it would only repeat it (and its side effects) with a delay."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import kombu.exceptions
import psycopg
import redis.exceptions
import sqlalchemy.exc
from celery import current_task

from app.providers.base import ProviderError

P = ParamSpec("P")
R = TypeVar("R")

# A provider that failed for now (one that refused the request is excluded by its
# ``retryable``), the database (connection lost, serialization failure, deadlock; psycopg's own
# for the bulk statements sent past SQLAlchemy), the broker, and the network.
CURABLE: tuple[type[Exception], ...] = (
    ProviderError,
    sqlalchemy.exc.OperationalError,
    psycopg.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    ConnectionError,
    TimeoutError,
)


def curable(
    exc: Exception,
    *,
    on: tuple[type[Exception], ...] = CURABLE,
    exclude: tuple[type[Exception], ...] = (),
) -> bool:
    """Whether running the task again may succeed where it raised ``exc``."""
    if isinstance(exc, exclude) or not isinstance(exc, on):
        return False
    return not isinstance(exc, ProviderError) or exc.retryable


def retry(
    *,
    on: tuple[type[Exception], ...] = CURABLE,
    exclude: tuple[type[Exception], ...] = (),
    max_retries: int = 5,
    backoff_max: int = 600,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry the task (under ``@celery_app.task``) on errors of ``on`` except ``exclude``, at
    most ``max_retries`` times, with exponential backoff (1 s, 2 s, 4 s ... up to
    ``backoff_max``); any other error fails it at once.

    The jitter is "equal jitter": half of each delay is kept, half is random. With full
    jitter (any delay from 0) five retries could all fall within a second or two, and a
    Postgres restart of a few seconds would use them up; these span at least 15 s."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                if not curable(exc, on=on, exclude=exclude):
                    raise
                task = current_task
                delay = min(backoff_max, 2.0**task.request.retries)
                countdown = delay / 2 + random.uniform(0, delay / 2)
                raise task.retry(exc=exc, countdown=countdown, max_retries=max_retries) from exc

        return wrapped

    return decorate
