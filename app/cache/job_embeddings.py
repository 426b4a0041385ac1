"""Queries on ``job_embeddings``: what ingest computed for a job's semantic lookup (a prompt's
vector, a document's band keys), kept while the job is in flight: searched for near-duplicates
in flight (coalescing), taken into its cache entry when its answer is stored, then deleted."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from sqlalchemy import DateTime, Select, Text, bindparam, delete, select, text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.orm import Session

from app.kit.db import in_array, index_scans_only, int_array_text
from app.models import JobEmbedding


class JobEmbeddingRow(TypedDict):
    """What ingest computed for a job's semantic lookup, kept until its answer is stored: a
    prompt's vector, a document's band keys."""

    job_id: uuid.UUID
    scope_key: str
    kind: str
    embedding: list[float] | None
    lsh_bands: list[int] | None
    created_at: datetime


# The in-flight side of the same probe: the saved band keys of jobs still waiting for their
# answer (GIN index of migration 0026_ingest). Compared as one ``&&`` with a chunk's keys, every
# live leader's array of the tenant was read and compared with all of them.
_JOB_BAND_PROBE = text(
    "SELECT DISTINCT hit.job_id FROM unnest(CAST(:keys AS bigint[])) AS k(key) CROSS JOIN LATERAL"
    " (SELECT j.job_id FROM job_embeddings AS j"
    "  WHERE j.lsh_bands IS NOT NULL AND j.lsh_bands && ARRAY[k.key]) AS hit"
).bindparams(bindparam("keys", type_=Text()))


@dataclass(frozen=True, slots=True)
class JobBands:
    """A job in flight that shares a band key with a query: its scope and band keys."""

    job_id: uuid.UUID
    scope_key: str
    lsh_bands: list[int] | None


def jobs_sharing_bands(
    session: Session, *, bands: list[int], scope_keys: list[str], among: Select[uuid.UUID]
) -> list[JobBands]:
    """Jobs among ``among`` (a subquery of ids) in any of ``scope_keys`` whose saved band keys
    share one with ``bands``: one probe of the GIN index per distinct key, then the rows."""
    keys = sorted(set(bands))
    if not keys:
        return []
    with index_scans_only(session):
        ids = list(session.scalars(_JOB_BAND_PROBE, {"keys": int_array_text(keys)}))
    if not ids:
        return []
    query = select(JobEmbedding.job_id, JobEmbedding.scope_key, JobEmbedding.lsh_bands).where(
        in_array(JobEmbedding.job_id, ids),
        in_array(JobEmbedding.scope_key, scope_keys),
        JobEmbedding.job_id.in_(among),
    )
    return [JobBands(row.job_id, row.scope_key, row.lsh_bands) for row in session.execute(query)]


def vector_text(values: list[float]) -> str:
    """A vector in pgvector's text form, four times faster than pgvector's own ``_to_db``
    (0.5 ms a 384-float vector on the loaded machine, 12% of a prompt chunk's ingest): nine
    significant digits give every float32 back exactly."""
    return "[" + ",".join(map("{:.9g}".format, values)) + "]"


def _vector_or_none(values: list[float] | None) -> str | None:
    return None if values is None else vector_text(values)


def _bands_or_none(keys: list[int] | None) -> str | None:
    return None if keys is None else int_array_text(keys)


# A text statement, so the vector is sent as ``vector_text`` made it.
_SAVE_JOB_EMBEDDINGS = text(
    "INSERT INTO job_embeddings (job_id, scope_key, kind, embedding, lsh_bands, created_at)"
    " VALUES (:job_id, :scope_key, :kind, CAST(:embedding AS vector), CAST(:lsh_bands AS bigint[]),"
    " :created_at)"
    " ON CONFLICT (job_id) DO UPDATE SET scope_key = excluded.scope_key,"
    " kind = excluded.kind, embedding = excluded.embedding, lsh_bands = excluded.lsh_bands"
).bindparams(
    bindparam("job_id", type_=PG_UUID(as_uuid=True)),
    bindparam("embedding", type_=Text()),
    bindparam("lsh_bands", type_=Text()),
    bindparam("created_at", type_=DateTime(timezone=True)),
)


def save_job_embeddings(session: Session, rows: list[JobEmbeddingRow]) -> None:
    if rows:
        params = [
            {
                **row,
                "embedding": _vector_or_none(row["embedding"]),
                "lsh_bands": _bands_or_none(row["lsh_bands"]),
            }
            for row in rows
        ]
        session.execute(_SAVE_JOB_EMBEDDINGS, params)


def delete_job_embeddings(session: Session, *, job_ids: list[uuid.UUID]) -> None:
    if job_ids:
        session.execute(delete(JobEmbedding).where(in_array(JobEmbedding.job_id, job_ids)))
