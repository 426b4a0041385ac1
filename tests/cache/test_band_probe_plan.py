"""The near-duplicate probes read their GIN indexes, one probe per band key: in flight the
one on ``job_embeddings.lsh_bands`` (migration 0026_ingest), in the cache the one on
``cache_entries.lsh_bands``, even where a table's statistics say it is empty (written faster
than autovacuum analyses it; a plan made then and kept as a prepared statement's generic plan
scanned the whole table once per key)."""

from __future__ import annotations

import pytest
from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from app.cache import job_embeddings, repository
from app.kit.db import index_scans_only


def _plan(db: Session, probe: TextClause, keys: list[int]) -> str:
    explain = text(f"EXPLAIN {probe.text}").bindparams(*probe._bindparams.values())
    return "\n".join(row[0] for row in db.execute(explain, {"keys": keys}))


@pytest.mark.parametrize(
    ("probe", "table", "index"),
    [
        (job_embeddings._JOB_BAND_PROBE, "job_embeddings", "ix_job_embeddings_lsh_bands"),
        (repository._BAND_PROBE, "cache_entries", "ix_cache_entries_lsh_bands"),
    ],
    ids=["in flight", "cached"],
)
def test_a_band_probe_uses_its_index(
    db: Session, probe: TextClause, table: str, index: str
) -> None:
    with index_scans_only(db):
        plan = _plan(db, probe, [11, 22, 33])
    assert index in plan
    assert f"Seq Scan on {table}" not in plan


def test_sequential_scans_are_allowed_again_after_the_probe(db: Session) -> None:
    with index_scans_only(db):
        assert db.scalar(text("SHOW enable_seqscan")) == "off"
    assert db.scalar(text("SHOW enable_seqscan")) == "on"
    db.rollback()


def test_a_failed_probe_leaves_nothing_behind_once_rolled_back(db: Session) -> None:
    try:
        with index_scans_only(db):
            db.execute(text("SELECT 1 / 0"))
    except Exception:
        db.rollback()
    assert db.scalar(text("SHOW enable_seqscan")) == "on"
