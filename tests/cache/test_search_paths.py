"""The two ways a prompt's nearest entries are searched (app/cache/sizes.py): a small scope
exactly, every row of it by the ``(tenant_id, scope_key)`` index, a large one by HNSW."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from app.cache import lookup, repository
from app.cache.repository import EntryRow, VectorQuery
from app.cache.sizes import ScopeSizes
from app.config import get_settings
from app.models import Tenant, utcnow
from tests.conftest import make_tenant

SCOPE = "s" * 64


def unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.normal(size=(count, 384))
    unit_vectors: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit_vectors


def store(
    db: Session, tenant: Tenant, vectors: np.ndarray, *, scope: str = SCOPE
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in vectors]
    rows = [
        EntryRow(
            id=entry_id, tenant_id=tenant.id, cache_key=uuid.uuid4().hex * 2, model="m",
            result="answer", source_job_id=uuid.uuid4(), input_tokens=0, output_tokens=0,
            hit_count=0, created_at=utcnow(), last_hit_at=None, scope_key=scope, kind="prompt",
            request_text="a prompt", embedding=vector.tolist(), lsh_bands=None,
        )
        for entry_id, vector in zip(ids, vectors, strict=True)
    ]  # fmt: skip
    repository.insert_many(db, rows)
    db.commit()
    return ids


class Statements:
    """The SQL a session sends, while listening."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(statement)

    def searched(self) -> list[str]:
        return ["exact" if "+ 0" in s else "hnsw" for s in self.sent if "CROSS JOIN LATERAL" in s
                and "<=>" in s]  # fmt: skip


@pytest.fixture
def statements(db: Session) -> Iterator[Statements]:
    listener = Statements()
    engine = db.get_bind()
    event.listen(engine, "before_cursor_execute", listener)
    yield listener
    event.remove(engine, "before_cursor_execute", listener)


@pytest.fixture
def crowded(db: Session, tenant: tuple[Tenant, str]) -> tuple[Tenant, list[uuid.UUID], np.ndarray]:
    """The tenant's 120 entries in one scope, beside another tenant's 400 in the same scope."""
    rng = np.random.default_rng(7)
    other, _ = make_tenant(db, name="umbrella")
    store(db, other, unit(rng, 400))
    vectors = unit(rng, 120)
    ids = store(db, tenant[0], vectors)
    db.execute(text("ANALYZE cache_entries"))
    db.commit()
    return tenant[0], ids, vectors


def true_nearest(ids: list[uuid.UUID], vectors: np.ndarray, query: np.ndarray) -> list[uuid.UUID]:
    order = np.argsort(-(vectors @ query))
    return [ids[i] for i in order[: get_settings().cache_candidates]]


def test_a_small_scope_is_searched_exactly_and_returns_the_true_nearest(
    db: Session, crowded: tuple[Tenant, list[uuid.UUID], np.ndarray], statements: Statements
) -> None:
    tenant, ids, vectors = crowded
    queries = unit(np.random.default_rng(8), 10)
    asked = [VectorQuery(tenant.id, SCOPE, q.tolist(), None) for q in queries]

    assert lookup.search_paths(db, queries=asked) == ["exact"] * 10
    found = lookup.search(db, queries=asked)

    assert statements.searched() == ["exact"]  # one statement for all ten
    assert not any("hnsw.ef_search" in s for s in statements.sent)
    for query, nearest in zip(queries, found, strict=True):
        assert [entry.id for entry, _ in nearest] == true_nearest(ids, vectors, query)
        assert all(entry.tenant_id == tenant.id for entry, _ in nearest)
        similarities = [sim for _, sim in nearest]
        assert similarities == sorted(similarities, reverse=True)


def test_a_scope_at_the_threshold_is_searched_by_hnsw(
    db: Session,
    crowded: tuple[Tenant, list[uuid.UUID], np.ndarray],
    statements: Statements,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, _, _ = crowded
    monkeypatch.setattr(get_settings(), "cache_exact_below", 120)  # the scope holds 120
    query = [VectorQuery(tenant.id, SCOPE, unit(np.random.default_rng(9), 1)[0].tolist(), None)]

    assert lookup.search_paths(db, queries=query) == ["hnsw"]
    (nearest,) = lookup.search(db, queries=query)

    assert statements.searched() == ["hnsw"]
    assert any("hnsw.ef_search" in s for s in statements.sent)
    assert len(nearest) == get_settings().cache_candidates
    assert all(entry.tenant_id == tenant.id for entry, _ in nearest)


def test_a_chunk_of_small_and_large_scopes_takes_both_paths_in_its_order(
    db: Session,
    crowded: tuple[Tenant, list[uuid.UUID], np.ndarray],
    statements: Statements,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, _, _ = crowded
    store(db, tenant, unit(np.random.default_rng(10), 5), scope="t" * 64)
    monkeypatch.setattr(get_settings(), "cache_exact_below", 50)
    queries = unit(np.random.default_rng(11), 2)
    asked = [VectorQuery(tenant.id, "t" * 64, queries[0].tolist(), None),
             VectorQuery(tenant.id, SCOPE, queries[1].tolist(), None)]  # fmt: skip

    assert lookup.search_paths(db, queries=asked) == ["exact", "hnsw"]
    small, large = lookup.search(db, queries=asked)

    assert sorted(statements.searched()) == ["exact", "hnsw"]
    assert {entry.scope_key for entry, _ in small} == {"t" * 64}
    assert len(small) == 5
    assert {entry.scope_key for entry, _ in large} == {SCOPE}


def test_both_paths_return_the_same_nearest_on_a_small_set(
    db: Session, crowded: tuple[Tenant, list[uuid.UUID], np.ndarray]
) -> None:
    tenant, ids, vectors = crowded
    queries = unit(np.random.default_rng(12), 20)
    asked = [VectorQuery(tenant.id, SCOPE, q.tolist(), None) for q in queries]

    exact = lookup.search(db, queries=asked, path="exact")
    db.rollback()
    hnsw = lookup.search(db, queries=asked, path="hnsw", ef_search=200)

    for query, by_rows, by_index in zip(queries, exact, hnsw, strict=True):
        assert [e.id for e, _ in by_rows] == [e.id for e, _ in by_index]
        assert [e.id for e, _ in by_rows] == true_nearest(ids, vectors, query)
        assert np.allclose([s for _, s in by_rows], [s for _, s in by_index])


def test_the_exact_statement_reads_the_scope_index_and_the_other_the_hnsw_index(
    db: Session, crowded: tuple[Tenant, list[uuid.UUID], np.ndarray]
) -> None:
    # On a table this small Postgres would rather read it whole and sort; ruling both out
    # shows which index each statement can use: the distance + 0 is no order the HNSW index
    # can serve, so that statement still reads the scope's rows and sorts them.
    tenant, _, _ = crowded
    query = [VectorQuery(tenant.id, SCOPE, unit(np.random.default_rng(13), 1)[0].tolist(), None)]
    params = repository.nearest_params(query, limit=5)
    plans = {}
    for way, statement in repository.NEAREST.items():
        db.execute(text("SET LOCAL enable_seqscan = off"))
        db.execute(text("SET LOCAL enable_sort = off"))
        explained = text("EXPLAIN " + statement.text).bindparams(*statement._bindparams.values())
        plans[way] = "\n".join(db.execute(explained, params).scalars())
        db.rollback()

    # the scope's rows found by a btree on the tenant (on a table this small Postgres may
    # prefer the narrow (tenant_id, cache_key) index to the covering (tenant_id, scope_key)
    # one), their distances sorted
    assert "Index Cond: (tenant_id = q.tenant_id" in plans["exact"]
    assert "ix_cache_entries_embedding" not in plans["exact"]
    assert "ix_cache_entries_embedding" in plans["hnsw"]


def test_the_scope_size_is_counted_up_to_the_threshold_remembered_then_counted_again(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    rng = np.random.default_rng(14)
    store(db, tenant[0], unit(rng, 3))
    scope = (tenant[0].id, SCOPE)
    assert repository.scope_sizes(db, scopes=[scope, (tenant[0].id, "none")], limit=2) == [2, 0]

    now = [100.0]
    sizes = ScopeSizes(remember_seconds=30, clock=lambda: now[0])
    assert sizes.paths(db, scopes=[scope], exact_below=5) == {scope: "exact"}

    store(db, tenant[0], unit(rng, 3))  # 6 now, at or over the threshold
    now[0] += 29
    assert sizes.paths(db, scopes=[scope], exact_below=5) == {scope: "exact"}  # remembered
    now[0] += 1
    assert sizes.paths(db, scopes=[scope], exact_below=5) == {scope: "hnsw"}  # counted again

    # Counted up to 5, the size says nothing about a higher threshold: counted again at once.
    assert sizes.paths(db, scopes=[scope], exact_below=10) == {scope: "exact"}
    assert sizes.paths(db, scopes=[scope], exact_below=0) == {scope: "hnsw"}  # 0: never exact
