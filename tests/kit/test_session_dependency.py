"""The request's session dependency is the unit of work: endpoints and services only flush."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.kit import queue
from app.kit.deps import get_session
from app.models import Tenant


def _names(db: Session) -> set[str]:
    db.expire_all()
    return set(db.scalars(select(Tenant.name)))


def test_a_returning_endpoint_commits(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(queue, "send_now", lambda task, *args: sent.append(task))
    dependency = get_session()
    session = next(dependency)
    session.add(Tenant(name="kept"))
    session.flush()
    queue.enqueue(session, queue.COLLECT)
    with pytest.raises(StopIteration):
        next(dependency)  # the endpoint returned
    assert _names(db) == {"kept"}
    assert sent == [queue.COLLECT]  # queued messages go out after the commit


def test_a_raising_endpoint_rolls_back(db: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    monkeypatch.setattr(queue, "send_now", lambda task, *args: sent.append(task))
    dependency = get_session()
    session = next(dependency)
    session.add(Tenant(name="dropped"))
    session.flush()
    queue.enqueue(session, queue.COLLECT)
    with pytest.raises(ValueError, match="bad input"):
        dependency.throw(ValueError("bad input"))
    assert _names(db) == set()
    assert sent == []  # and their messages are dropped
