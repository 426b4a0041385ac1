"""The submit_batch task retries what a retry can cure (a provider or connection down for now),
never a plain bug. The task runs in this process against the real database; its ``retry`` is
recorded instead of re-sending the message."""

from __future__ import annotations

from typing import Any, NoReturn

import psycopg
import pytest
import redis.exceptions
import sqlalchemy.exc
from celery.exceptions import Retry
from sqlalchemy.orm import Session

from app.batching import submitter
from app.catalog.catalog import Catalog, get_catalog
from app.models import BatchState, Tenant
from app.providers.base import ProviderError
from tests.batching.test_submit_and_poll import pending_batch
from workers import tasks
from workers.retry import curable


@pytest.fixture
def catalog() -> Catalog:
    return get_catalog()


@pytest.fixture
def retries(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each ``retry`` the submit_batch task asks for (it raises Retry, as Celery's does)."""
    asked: list[dict[str, Any]] = []

    def retry(**options: Any) -> Retry:
        asked.append(options)
        return Retry("retry recorded", options.get("exc"))

    monkeypatch.setattr(tasks.submit_batch, "retry", retry)
    return asked


def fail_with(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    """Make building the batch's requests raise ``exc``, after the attempt was counted."""

    def raising(*args: Any, **kwargs: Any) -> NoReturn:
        raise exc

    monkeypatch.setattr(submitter, "split_requests", raising)


def test_a_bug_in_submit_fails_the_task_at_once(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    retries: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch, _ = pending_batch(db, tenant[0], catalog)
    fail_with(monkeypatch, TypeError("a plain bug"))

    with pytest.raises(TypeError, match="a plain bug"):
        tasks.submit_batch(str(batch.id))

    assert retries == []
    db.refresh(batch)
    assert batch.state == BatchState.pending  # the sweeper re-drives it, once fixed
    assert batch.submit_attempts == 1


def test_a_provider_down_for_now_is_retried(
    db: Session,
    tenant: tuple[Tenant, str],
    catalog: Catalog,
    retries: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch, _ = pending_batch(db, tenant[0], catalog)
    down = ProviderError("503 from the provider", retryable=True, status_code=503)
    fail_with(monkeypatch, down)

    with pytest.raises(Retry):
        tasks.submit_batch(str(batch.id))

    (asked,) = retries
    assert asked["exc"] is down
    assert asked["max_retries"] == 5
    assert 0.5 <= asked["countdown"] <= 1  # the first delay, 1 s: half kept, half random
    db.refresh(batch)
    assert batch.state == BatchState.pending
    assert batch.external_id is None


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ProviderError("503", retryable=True, status_code=503), True),
        (ProviderError("400: bad model", retryable=False, status_code=400), False),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed")), True),
        (psycopg.errors.SerializationFailure("could not serialize access"), True),
        (redis.exceptions.ConnectionError("connection refused"), True),
        (ConnectionResetError("reset by peer"), True),
        (TimeoutError("timed out"), True),
        (TypeError("a plain bug"), False),
        (KeyError("gpt-9"), False),
        (sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_only_errors_a_retry_can_cure_are_retried(exc: Exception, expected: bool) -> None:
    assert curable(exc) is expected
