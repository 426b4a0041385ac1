"""Engine and session handling. Services and repositories only flush; the caller commits."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import (
    ColumnElement,
    Dialect,
    Engine,
    Enum,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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


def column_arrays(
    session: Session, table: Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[list[Any]]]:
    """One typed array parameter per column of ``rows``, for ``unnest(...)`` statements: the
    placeholders (``%b::type[]``, sent in binary) and the arrays. Enums travel as their
    values, JSON as ``Jsonb``."""
    dialect = session.get_bind().dialect
    placeholders: list[str] = []
    arrays: list[list[Any]] = []
    for name in names:
        placeholder, values = _typed_array(dialect, table, name, [row[name] for row in rows])
        placeholders.append(placeholder)
        arrays.append(values)
    return placeholders, arrays


def _typed_array(
    dialect: Dialect, table: Table, name: str, values: list[Any]
) -> tuple[str, list[Any]]:
    column_type = table.c[name].type
    if isinstance(column_type, TypeDecorator):
        values = [column_type.process_bind_param(value, dialect) for value in values]
        column_type = column_type.impl_instance
    if isinstance(column_type, Enum):
        values = [getattr(value, "value", value) for value in values]
        return f"%b::text[]::{column_type.name}[]", values
    if isinstance(column_type, JSONB):
        values = [None if value is None else Jsonb(value, orjson.dumps) for value in values]
        return "%b::jsonb[]", values
    return f"%b::{column_type.compile(dialect=dialect)}[]", values


def execute_binary(session: Session, sql: str, params: Sequence[Any]) -> psycopg.Cursor[Any]:
    """Run ``sql`` on the session's connection with parameters in binary form.

    For array parameters this matters: the text form quotes and escapes every element in
    Python, which costs more than Postgres spends on the statement.
    """
    connection = session.connection().connection.driver_connection
    assert isinstance(connection, psycopg.Connection)
    cursor = connection.cursor()
    cursor.execute(sql, params, binary=True)
    return cursor


def update_by_id(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *, guard: str = ""
) -> int:
    """Write per-row values onto ``table`` by ``id`` in one ``UPDATE … FROM unnest(arrays)``.

    Every row has the same keys (``id`` plus table columns). ``guard`` is an extra SQL
    condition on the table's row (fixed text, no values). Returns the number of rows updated.
    """
    if not rows:
        return 0
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    return update_columns(session, table, columns, guard=guard)


def update_columns(
    session: Session, table: Table, columns: Mapping[str, list[Any]], *, guard: str = ""
) -> int:
    """``update_by_id`` for values already held column by column (``id`` plus table columns,
    lists of one length): no row mappings to build.

    One statement with one array per column: a thousand rows cost one round trip, and the
    statement text never grows.
    """
    ids = columns["id"]
    if not ids:
        return 0
    dialect = session.get_bind().dialect
    names = [name for name in columns if name != "id"]
    placeholders: list[str] = []
    arrays: list[list[Any]] = [ids]
    for name in names:
        placeholder, values = _typed_array(dialect, table, name, columns[name])
        placeholders.append(placeholder)
        arrays.append(values)
    assignments = ", ".join(f'"{name}" = v."{name}"' for name in names)
    aliases = ", ".join(['"id"', *(f'"{name}"' for name in names)])
    # Identifiers are the table's own column names (table.c above); every value is a parameter.
    sql = (
        f'UPDATE "{table.name}" SET {assignments} '  # noqa: S608
        f"FROM unnest(%b::uuid[], {', '.join(placeholders)}) AS v({aliases}) "
        f'WHERE "{table.name}".id = v.id{f" AND {guard}" if guard else ""}'
    )
    with execute_binary(session, sql, arrays) as cursor:
        return cursor.rowcount
