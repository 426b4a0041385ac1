"""Queries on the cache's tables: ``cache_entries``, ``cache_settings`` (``job_embeddings`` in
``job_embeddings.py``)."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast

from pgvector import Vector
from sqlalchemy import (
    DateTime,
    Integer,
    Table,
    Text,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Session, defer
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.types import TypeEngine

from app.kit.db import execute_binary, in_array, index_scans_only, int_array_text
from app.models import CacheEntry, CacheSettings


class AnswerRow(TypedDict):
    """An answer to remember: the entry's own columns; the semantic ones come from the job's
    ``job_embeddings`` row (``insert_answers``)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    cache_key: str
    model: str
    result: str
    source_job_id: uuid.UUID
    input_tokens: int
    output_tokens: int
    request_text: str | None


class EntryRow(AnswerRow):
    """One ``cache_entries`` row to insert whole (the semantic columns are None for exact
    only)."""

    hit_count: int
    created_at: datetime
    last_hit_at: datetime | None
    scope_key: str | None
    kind: str | None
    embedding: list[float] | None
    lsh_bands: list[int] | None


def typed_array(values: list[Any], item: TypeEngine[Any]) -> BindParameter[Any]:
    """One array parameter of ``item`` values."""
    return bindparam(None, values, type_=ARRAY(item))


def find_many(
    session: Session, *, tenant_id: uuid.UUID, keys: list[str], since: datetime | None = None
) -> dict[str, CacheEntry]:
    # An exact hit needs the answer, not the vector or the request text.
    query = (
        select(CacheEntry)
        .options(defer(CacheEntry.embedding), defer(CacheEntry.request_text),
                 defer(CacheEntry.lsh_bands))
        .where(CacheEntry.tenant_id == tenant_id, in_array(CacheEntry.cache_key, keys))
    )  # fmt: skip
    if since is not None:
        query = query.where(CacheEntry.created_at >= since)
    return {entry.cache_key: entry for entry in session.scalars(query)}


def count_hits(session: Session, *, entry_ids: list[uuid.UUID], now: datetime) -> None:
    """One statement for all hits; an entry hit by two jobs of one lookup counts twice."""
    if not entry_ids:
        return
    counts = Counter(entry_ids)
    ids = sorted(counts)  # a fixed order, so concurrent lookups lock rows alike
    hits = (
        select(
            func.unnest(typed_array(ids, PG_UUID(as_uuid=True))).label("id"),
            func.unnest(typed_array([counts[i] for i in ids], Integer())).label("n"),
        )
    ).subquery()
    session.execute(
        update(CacheEntry)
        .where(CacheEntry.id == hits.c.id)
        .values(hit_count=CacheEntry.hit_count + hits.c.n, last_hit_at=now)
        .execution_options(synchronize_session=False)
    )


# Rows are sent as executemany of one cached statement (psycopg pipelines them), not as one
# INSERT with a VALUES tuple per row: SQLAlchemy compiled the latter anew for every batch, 16
# parameters a row, which took longer than Postgres took to write the rows.
_ENTRY_COLUMNS = (
    "model", "result", "source_job_id", "input_tokens", "output_tokens", "hit_count",
    "scope_key", "kind", "request_text", "embedding", "lsh_bands", "created_at", "last_hit_at",
)  # fmt: skip
_insert = insert(cast(Table, CacheEntry.__table__))
_KEEP = _insert.on_conflict_do_nothing(index_elements=["tenant_id", "cache_key"])
_REPLACE = _insert.on_conflict_do_update(
    index_elements=["tenant_id", "cache_key"],
    set_={c: _insert.excluded[c] for c in _ENTRY_COLUMNS},
)


def insert_many(session: Session, rows: list[EntryRow], *, replace: bool = False) -> None:
    """Insert entries; an existing entry for the same tenant and key is kept, or with
    ``replace`` overwritten (a ``cache: refresh`` request)."""
    if rows:
        session.execute(_REPLACE if replace else _KEEP, rows)


# Answers become entries in one statement that takes each job's scope, kind, vector and band
# keys from what its lookup saved in ``job_embeddings``, instead of reading 384 floats a prompt
# into Python and sending them back. The request text is kept only for a job that has one
# (a job without a semantic lookup is an exact entry). Rows in key order, so concurrent polls
# lock keys alike.
_ANSWERS_SELECT = (
    "INSERT INTO cache_entries (id, tenant_id, cache_key, model, result, source_job_id,"
    " input_tokens, output_tokens, hit_count, created_at, last_hit_at, scope_key, kind,"
    " request_text, embedding, lsh_bands)"
    " SELECT a.id, a.tenant_id, a.cache_key, a.model, a.result, a.source_job_id,"
    "  a.input_tokens, a.output_tokens, 0, %(now)b::timestamptz, NULL, e.scope_key, e.kind,"
    "  CASE WHEN e.job_id IS NULL THEN NULL ELSE a.request_text END, e.embedding, e.lsh_bands"
    " FROM unnest(%(ids)b::uuid[], %(tenant_ids)b::uuid[], %(cache_keys)b::text[],"
    "  %(models)b::text[], %(results)b::text[], %(source_job_ids)b::uuid[],"
    "  %(input_tokens)b::integer[], %(output_tokens)b::integer[], %(request_texts)b::text[])"
    "  AS a(id, tenant_id, cache_key, model, result, source_job_id, input_tokens,"
    "  output_tokens, request_text)"
    " LEFT JOIN job_embeddings AS e ON e.job_id = a.source_job_id"
    " ORDER BY a.tenant_id, a.cache_key"
    " ON CONFLICT (tenant_id, cache_key) DO "
)
# (parameter, row field): sent in binary (``execute_binary``), as the text form quoted and
# escaped each of a thousand documents and answers in Python (0.19 s against 0.02 s a batch).
_ANSWER_ARRAYS = (
    ("ids", "id"),
    ("tenant_ids", "tenant_id"),
    ("cache_keys", "cache_key"),
    ("models", "model"),
    ("results", "result"),
    ("source_job_ids", "source_job_id"),
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("request_texts", "request_text"),
)
_ANSWERS_KEEP = _ANSWERS_SELECT + "NOTHING"
_ANSWERS_REPLACE = (
    _ANSWERS_SELECT + "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _ENTRY_COLUMNS)
)


def insert_answers(
    session: Session, rows: list[AnswerRow], *, now: datetime, replace: bool = False
) -> None:
    """``insert_many`` for answers, their semantic columns from their jobs' saved lookups (one
    statement; one row per tenant and key, as an upsert cannot touch a row twice)."""
    if not rows:
        return
    params: dict[str, Any] = {name: [row[key] for row in rows] for name, key in _ANSWER_ARRAYS}  # type: ignore[literal-required]
    params["now"] = now
    execute_binary(session, _ANSWERS_REPLACE if replace else _ANSWERS_KEEP, params)


def set_search_breadth(session: Session, *, ef_search: int) -> None:
    """HNSW search settings for the rest of this transaction. Iterative scans keep filtered
    searches (one tenant and scope among many) from returning too few rows."""
    session.execute(text(f"SET LOCAL hnsw.ef_search = {int(ef_search)}"))
    session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))


@dataclass(frozen=True)
class VectorQuery:
    """One prompt's nearest-entries question: its tenant, scope, vector and oldest entry."""

    tenant_id: uuid.UUID
    scope_key: str
    embedding: list[float]
    since: datetime | None


# The nearest entries of a whole chunk's prompts in one statement: one search per prompt
# (LATERAL), not one round trip per prompt through the ORM (0.16 s against 0.69 s for 250).
# ``hnsw``: ORDER BY the bare distance, which the HNSW index serves (iterative scan on).
# ``exact``: ORDER BY the distance ``+ 0``, an expression the HNSW index cannot serve, so
# Postgres reads the scope's rows by the ``(tenant_id, scope_key)`` index and sorts their
# distances (app/cache/sizes.py says which scopes are small enough for that).
_NEAREST_SQL = (
    "SELECT q.i, hit.id, hit.distance"
    " FROM unnest(:i, :tenant_ids, :scope_keys, CAST(:embeddings AS vector[]), :since)"
    "  AS q(i, tenant_id, scope_key, embedding, since)"
    " CROSS JOIN LATERAL (SELECT e.id, e.embedding <=> q.embedding AS distance"
    "  FROM cache_entries AS e WHERE e.tenant_id = q.tenant_id AND e.scope_key = q.scope_key"
    "  AND e.embedding IS NOT NULL AND (q.since IS NULL OR e.created_at >= q.since)"
    "  ORDER BY {order} LIMIT :limit) AS hit"
)
_NEAREST_PARAMS = (
    bindparam("i", type_=ARRAY(Integer())),
    bindparam("tenant_ids", type_=ARRAY(PG_UUID(as_uuid=True))),
    bindparam("scope_keys", type_=ARRAY(Text())),
    bindparam("embeddings", type_=ARRAY(Text())),
    bindparam("since", type_=ARRAY(DateTime(timezone=True))),
)
NEAREST = {
    "hnsw": text(_NEAREST_SQL.format(order="e.embedding <=> q.embedding")).bindparams(
        *_NEAREST_PARAMS
    ),
    "exact": text(_NEAREST_SQL.format(order="(e.embedding <=> q.embedding) + 0")).bindparams(
        *_NEAREST_PARAMS
    ),
}


def nearest_params(queries: list[VectorQuery], *, limit: int) -> dict[str, Any]:
    """The parameters of a ``NEAREST`` statement for ``queries``."""
    return {
        "i": list(range(len(queries))),
        "tenant_ids": [q.tenant_id for q in queries],
        "scope_keys": [q.scope_key for q in queries],
        "embeddings": [Vector._to_db(q.embedding) for q in queries],
        "since": [q.since for q in queries],
        "limit": limit,
    }


def nearest_many(
    session: Session, *, queries: list[VectorQuery], limit: int, exact: bool = False
) -> list[list[tuple[CacheEntry, float]]]:
    """The ``limit`` entries of each query's tenant and scope closest to its vector (cosine),
    best first, for each of ``queries`` in their order, in two statements; ``exact`` searches
    every row of the scope instead of the HNSW index."""
    if not queries:
        return []
    statement = NEAREST["exact" if exact else "hnsw"]
    found = session.execute(statement, nearest_params(queries, limit=limit)).all()
    if not found:
        return [[] for _ in queries]
    ids = sorted({row.id for row in found})
    query = select(CacheEntry).options(defer(CacheEntry.embedding))
    entries = {e.id: e for e in session.scalars(query.where(in_array(CacheEntry.id, ids)))}
    nearest: list[list[tuple[CacheEntry, float]]] = [[] for _ in queries]
    for row in found:
        if row.id in entries:
            nearest[row.i].append((entries[row.id], 1.0 - float(row.distance)))
    # relaxed_order may return neighbours slightly out of order
    return [sorted(pairs, key=lambda pair: -pair[1]) for pairs in nearest]


# Each distinct band key is probed in the GIN index on its own (a LATERAL per key, about 7 us
# each). One ``lsh_bands && :keys`` with a whole chunk's keys (250 documents x 42 bands) makes
# Postgres compare every candidate row's array with all of them, and its estimate for so wide
# an array sends the plan to a scan of every entry of the tenant: 2-4 s per chunk at 4,000
# entries (docs/benchmarks.md, "Ingest").
_BAND_PROBE = text(
    "SELECT DISTINCT hit.id FROM unnest(CAST(:keys AS bigint[])) AS k(key) CROSS JOIN LATERAL"
    " (SELECT c.id FROM cache_entries AS c"
    "  WHERE c.lsh_bands IS NOT NULL AND c.lsh_bands && ARRAY[k.key]) AS hit"
).bindparams(bindparam("keys", type_=Text()))


def near_duplicates(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    scope_keys: list[str],
    bands: list[int],
    since: datetime | None,
) -> list[CacheEntry]:
    """Document entries of the tenant, in any of ``scope_keys``, sharing a band key with
    ``bands`` (one probe of the GIN index per distinct key, then the rows by id, for a whole
    chunk's documents in two statements)."""
    keys = sorted(set(bands))
    if not keys:
        return []
    # Planned with sequential scans off: psycopg prepares a statement run five times, and a
    # generic plan made while the table looked small scanned every entry once per key (one
    # ingest process's chunks took 17-27 s instead of 0.7 s in a 10,000-document run).
    with index_scans_only(session):
        ids = list(session.scalars(_BAND_PROBE, {"keys": int_array_text(keys)}))
    if not ids:
        return []
    query = (
        select(CacheEntry)
        .options(defer(CacheEntry.embedding))
        .where(
            in_array(CacheEntry.id, ids),
            CacheEntry.tenant_id == tenant_id,
            in_array(CacheEntry.scope_key, scope_keys),
        )
    )
    if since is not None:
        query = query.where(CacheEntry.created_at >= since)
    return list(session.scalars(query))


def get_settings(session: Session, *, tenant_id: uuid.UUID) -> CacheSettings | None:
    return session.get(CacheSettings, tenant_id)


# Each scope's entries counted up to ``limit`` (an index-only scan of the ``(tenant_id,
# scope_key)`` index that stops there), for all scopes of a chunk in one statement.
_SCOPE_SIZES = text(
    "SELECT q.i, (SELECT count(*) FROM (SELECT 1 FROM cache_entries AS e"
    "  WHERE e.tenant_id = q.tenant_id AND e.scope_key = q.scope_key LIMIT :limit) AS s)"
    " FROM unnest(:i, :tenant_ids, :scope_keys) AS q(i, tenant_id, scope_key)"
).bindparams(*_NEAREST_PARAMS[:3])


def scope_sizes(session: Session, *, scopes: list[tuple[uuid.UUID, str]], limit: int) -> list[int]:
    """The entries of each (tenant, scope) of ``scopes``, counted up to ``limit``."""
    if not scopes:
        return []
    params = {
        "i": list(range(len(scopes))),
        "tenant_ids": [tenant_id for tenant_id, _ in scopes],
        "scope_keys": [scope for _, scope in scopes],
        "limit": limit,
    }
    counts: dict[int, int] = {i: n for i, n in session.execute(_SCOPE_SIZES, params).all()}
    return [int(counts[i]) for i in range(len(scopes))]


def count_entries(session: Session, *, tenant_id: uuid.UUID) -> int:
    query = select(func.count()).select_from(CacheEntry).where(CacheEntry.tenant_id == tenant_id)
    return int(session.scalar(query) or 0)


def delete_expired(session: Session, *, tenant_id: uuid.UUID, before: datetime) -> int:
    result = session.execute(
        delete(CacheEntry).where(CacheEntry.tenant_id == tenant_id, CacheEntry.created_at < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def evict_least_recent(session: Session, *, tenant_id: uuid.UUID, count: int) -> int:
    """Delete the ``count`` entries least recently used (last hit, else written)."""
    recency = func.coalesce(CacheEntry.last_hit_at, CacheEntry.created_at)
    victims = (
        select(CacheEntry.id)
        .where(CacheEntry.tenant_id == tenant_id)
        .order_by(recency, CacheEntry.created_at)
        .limit(count)
        .scalar_subquery()
    )
    result = session.execute(delete(CacheEntry).where(CacheEntry.id.in_(victims)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def invalidate(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    entry_ids: list[uuid.UUID],
    source_job_ids: list[uuid.UUID],
    everything: bool,
) -> int:
    query = delete(CacheEntry).where(CacheEntry.tenant_id == tenant_id)
    if not everything:
        query = query.where(
            or_(CacheEntry.id.in_(entry_ids), CacheEntry.source_job_id.in_(source_job_ids))
        )
    result = session.execute(query)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
