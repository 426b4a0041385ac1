"""Engine and session handling. Services and repositories only flush; the caller commits."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from functools import lru_cache, partial
from operator import attrgetter
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import (
    ColumnElement,
    Engine,
    Enum,
    Table,
    TypeDecorator,
    any_,
    bindparam,
    create_engine,
    text,
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


def attribute_arrays(
    session: Session, table: Table, names: Sequence[str], rows: Sequence[object]
) -> tuple[list[str], list[list[Any]]]:
    """``typed_arrays`` for typed rows (frozen dataclasses, named tuples) whose attributes
    are named after the columns: one ``getattr`` pass per column, no per-row conversion."""
    columns = [list(map(attrgetter(name), rows)) for name in names]
    return typed_arrays(session, table, names, columns)


def typed_arrays(
    session: Session, table: Table, names: Sequence[str], columns: Sequence[list[Any]]
) -> tuple[list[str], list[list[Any]]]:
    """One typed array parameter per column, for ``unnest(...)`` statements: the placeholders
    (``%b::type[]``, sent in binary) and the arrays, from one list of values per column in
    ``names``. Enums travel as their values, JSON as ``Jsonb``."""
    dialect = session.get_bind().dialect
    placeholders: list[str] = []
    arrays: list[list[Any]] = []
    for name, values in zip(names, columns, strict=True):
        column_type = table.c[name].type
        if isinstance(column_type, TypeDecorator):
            values = [column_type.process_bind_param(value, dialect) for value in values]
            column_type = column_type.impl_instance
        if isinstance(column_type, Enum):
            values = [getattr(value, "value", value) for value in values]
            placeholders.append(f"%b::text[]::{column_type.name}[]")
        elif isinstance(column_type, JSONB):
            values = [None if value is None else Jsonb(value, orjson.dumps) for value in values]
            placeholders.append("%b::jsonb[]")
        else:
            placeholders.append(f"%b::{column_type.compile(dialect=dialect)}[]")
        arrays.append(values)
    return placeholders, arrays


def int_array_text(values: Sequence[int]) -> str:
    """Integers in Postgres's array text form, for a ``CAST(:param AS bigint[])``: one
    ``str.join`` instead of psycopg's element-by-element dump of a list (a chunk's 10,500 band
    keys took it 20-60 ms a statement)."""
    return "{" + ",".join(map(str, values)) + "}"


def execute_binary(
    session: Session, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> psycopg.Cursor[Any]:
    """Run ``sql`` on the session's connection with parameters in binary form.

    For array parameters this matters: the text form quotes and escapes every element in
    Python, which costs more than Postgres spends on the statement.
    """
    connection = session.connection().connection.driver_connection
    assert isinstance(connection, psycopg.Connection)
    cursor = connection.cursor()
    cursor.execute(sql, params, binary=True)
    return cursor


def _update_sql(
    session: Session, table: Table, columns: Mapping[str, list[Any]], guard: str
) -> tuple[str, list[Any]]:
    """The ``UPDATE ... FROM unnest(arrays)`` of ``update_columns`` and its parameters."""
    names = [name for name in columns if name != "id"]
    placeholders, arrays = typed_arrays(session, table, names, [columns[name] for name in names])
    assignments = ", ".join(f'"{name}" = v."{name}"' for name in names)
    aliases = ", ".join(['"id"', *(f'"{name}"' for name in names)])
    # Identifiers are the table's own column names (table.c in typed_arrays); every value is
    # a parameter.
    sql = (
        f'UPDATE "{table.name}" SET {assignments} '  # noqa: S608
        f"FROM unnest(%b::uuid[], {', '.join(placeholders)}) AS v({aliases}) "
        f'WHERE "{table.name}".id = v.id{f" AND {guard}" if guard else ""}'
    )
    return sql, [columns["id"], *arrays]


def update_columns(
    session: Session, table: Table, columns: Mapping[str, list[Any]], *, guard: str = ""
) -> int:
    """Write per-row values onto ``table`` by ``id`` in one ``UPDATE … FROM unnest(arrays)``,
    from values held column by column (``id`` plus table columns, lists of one length).

    One statement with one array per column: a thousand rows cost one round trip, and the
    statement text never grows. ``guard`` is an extra SQL condition on the table's row (fixed
    text, no values). Returns the number of rows updated.
    """
    if not columns["id"]:
        return 0
    sql, params = _update_sql(session, table, columns, guard)
    with execute_binary(session, sql, params) as cursor:
        return cursor.rowcount


def update_returning(
    session: Session,
    table: Table,
    columns: Mapping[str, list[Any]],
    *,
    returning: Sequence[str],
    guard: str = "",
) -> list[tuple[Any, ...]]:
    """``update_columns`` that gives back the ``returning`` columns of each row updated, as
    the ORM would load them (enums as their members), in no particular order: what a caller
    would otherwise read again right after writing."""
    if not columns["id"]:
        return []
    sql, params = _update_sql(session, table, columns, guard)
    dialect = session.get_bind().dialect
    selected: list[str] = []
    loaders: list[Any] = []
    for name in returning:
        column_type = table.c[name].type
        expression = f'"{table.name}"."{name}"'
        if isinstance(column_type, TypeDecorator):
            loaders.append(partial(column_type.process_result_value, dialect=dialect))
        elif isinstance(column_type, Enum) and column_type.enum_class is not None:
            expression += "::text"  # an enum's binary form is not loaded by psycopg
            loaders.append(partial(_member, column_type.enum_class))
        else:
            loaders.append(None)
        selected.append(expression)
    with execute_binary(session, f"{sql} RETURNING {', '.join(selected)}", params) as cursor:
        return [
            tuple(v if load is None else load(v) for load, v in zip(loaders, row, strict=True))
            for row in cursor.fetchall()
        ]


def _member(enum_class: Any, value: Any) -> Any:
    return None if value is None else enum_class(value)


def row_names(row: object) -> tuple[str, ...]:
    """The attribute names of a typed row: a dataclass's fields or a named tuple's."""
    if is_dataclass(row):
        return tuple(field.name for field in fields(row))
    names: tuple[str, ...] = getattr(row, "_fields")  # noqa: B009
    return names


def row_columns(rows: Sequence[object]) -> dict[str, list[Any]]:
    """Typed rows of one type (frozen dataclasses, named tuples) whose attributes are ``id``
    plus columns of a table, as one list of values per attribute (for ``update_columns``)."""
    if not rows:
        return {"id": []}
    return {name: list(map(attrgetter(name), rows)) for name in row_names(rows[0])}


def update_rows_by_id(
    session: Session, table: Table, rows: Sequence[object], *, guard: str = ""
) -> int:
    """``update_columns`` for typed rows of one type (``row_columns``). Returns the number
    of rows updated."""
    if not rows:
        return 0
    return update_columns(session, table, row_columns(rows), guard=guard)


@contextmanager
def index_scans_only(session: Session) -> Iterator[None]:
    """Within the block, the planner does not choose a sequential scan where an index can
    serve (``SET LOCAL``, this transaction only; back to the session's setting after). For
    probes of a table whose statistics lag behind its rows (one written and emptied as fast
    as ``job_embeddings``): estimated empty, a probe per key became a scan of the table per
    key. No ``finally``: a block that raises rolls the transaction back, which undoes it."""
    session.execute(text("SET LOCAL enable_seqscan = off"))
    yield
    session.execute(text("SET LOCAL enable_seqscan TO DEFAULT"))
