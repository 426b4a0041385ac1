"""The in-flight near-duplicate probe reads the GIN index on ``job_embeddings.lsh_bands``
(migration 0024_ingest), one probe per band key, even where the table's statistics say it is
empty (it is written and emptied faster than autovacuum analyses it)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.cache import job_embeddings
from app.kit.db import index_scans_only


def _plan(db: Session, keys: list[int]) -> str:
    probe = job_embeddings._JOB_BAND_PROBE
    explain = text(f"EXPLAIN {probe.text}").bindparams(*probe._bindparams.values())
    return "\n".join(row[0] for row in db.execute(explain, {"keys": keys}))


def test_the_probe_of_jobs_in_flight_uses_the_band_index(db: Session) -> None:
    with index_scans_only(db):
        plan = _plan(db, [11, 22, 33])
    assert "ix_job_embeddings_lsh_bands" in plan
    assert "Seq Scan on job_embeddings" not in plan


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
