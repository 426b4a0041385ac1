"""Engine and session handling. Services and repositories only flush; the caller commits."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Engine, Enum, Table, any_, bindparam, create_engine
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

from app.config import get_settings


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    return create_engine(settings.database_url, pool_pre_ping=True, pool_size=10, max_overflow=10)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commits on success, rolls back on any exception."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def in_array(column: QueryableAttribute[Any], values: Collection[Any]) -> ColumnElement[bool]:
    """``column = ANY(:values)`` with the values as one array parameter.

    ``IN (...)`` binds one placeholder per value, which SQLAlchemy renders and psycopg parses
    again on every call: for the thousand ids of a batch that cost more than the query.
    """
    return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))


def update_by_id(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, guard: str = ""
) -> int:
    """Write per-row values onto ``table`` by ``id`` in one ``UPDATE … FROM unnest(arrays)``.

    Every row has the same keys (``id`` plus table columns). One statement with one array per
    column: a thousand rows cost one round trip, and the statement text never grows.
    ``guard`` is an extra SQL condition on the table's row (fixed text, no values). Returns
    the number of rows updated.
    """
    if not rows:
        return 0
    names = [name for name in rows[0] if name != "id"]
    dialect = session.get_bind().dialect
    arrays: list[list[Any]] = [[row["id"] for row in rows]]
    unnest = ["%s::uuid[]"]
    for name in names:
        column_type = table.c[name].type
        values = [row[name] for row in rows]
        if isinstance(column_type, Enum):
            values = [getattr(value, "value", value) for value in values]
            unnest.append(f"%s::text[]::{column_type.name}[]")
        else:
            unnest.append(f"%s::{column_type.compile(dialect=dialect)}[]")
        arrays.append(values)
    assignments = ", ".join(f'"{name}" = v."{name}"' for name in names)
    aliases = ", ".join(['"id"', *(f'"{name}"' for name in names)])
    # Identifiers are the table's own column names (table.c above); every value is a parameter.
    sql = (
        f'UPDATE "{table.name}" SET {assignments} '  # noqa: S608
        f"FROM unnest({', '.join(unnest)}) AS v({aliases}) "
        f'WHERE "{table.name}".id = v.id{f" AND {guard}" if guard else ""}'
    )
    return session.connection().exec_driver_sql(sql, tuple(arrays)).rowcount
