"""FastAPI dependencies that belong to no domain: the request's unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from app.kit.db import get_sessionmaker


def get_session() -> Iterator[Session]:
    """A session per request: committed when the endpoint returns, rolled back when it raises.

    Endpoints and services only flush. The dependency is function-scoped, so the commit (and
    the messages queued on the session, sent after it) happens before the response is sent:
    a client never sees 2xx for a write that was not stored.
    """
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
