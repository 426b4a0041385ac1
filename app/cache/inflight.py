"""Near-duplicate documents among requests still in flight (coalescing's semantic side).

A lightly edited copy of a document (a syndicated article) that arrives while its original
is still waiting, batched or at the provider finds nothing in the cache yet, and its exact
key differs, so exact coalescing does not catch it either. The original's band keys were
saved at its own lookup (``job_embeddings``); this finds the in-flight jobs among
``among`` (the live coalescing leaders, a subquery the caller hands in) that share a band
key with a query, and applies the cache's own full-text check (``verify.same_document``,
with the tenant's document threshold) to the best ``cache_candidates`` of them. What passes
would have been a semantic cache hit had the original already been answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Select
from sqlalchemy.orm import Session

from app.cache import job_embeddings, neardup, verify
from app.config import get_settings


@dataclass(frozen=True, slots=True)
class NearQuery:
    """A document that missed the cache: its scope, text, band keys and the least shingle
    Jaccard a match needs (the tenant's document threshold, never below the check's floor)."""

    scope: str
    text: str
    bands: list[int]
    min_jaccard: float


def in_flight_matches(
    session: Session,
    *,
    queries: Mapping[uuid.UUID, NearQuery],
    among: Select[uuid.UUID],
    texts: Callable[[Sequence[uuid.UUID]], Mapping[uuid.UUID, str]],
) -> dict[uuid.UUID, uuid.UUID]:
    """For each query (by job id) that has one, the in-flight job among ``among`` whose
    document passes the near-duplicate check; ``texts`` reads candidates' documents."""
    if not queries:
        return {}
    rows = job_embeddings.jobs_sharing_bands(
        session,
        bands=[key for query in queries.values() for key in query.bands],
        scope_keys=sorted({q.scope for q in queries.values()}),
        among=among,
    )
    limit = get_settings().cache_candidates
    by_scope: dict[str, list[tuple[uuid.UUID, list[int] | None]]] = {}
    for row in rows:
        by_scope.setdefault(row.scope_key, []).append((row.job_id, row.lsh_bands))
    indexes = {scope: neardup.band_index(found) for scope, found in by_scope.items()}
    ranked: dict[uuid.UUID, list[uuid.UUID]] = {}
    for job_id, query in queries.items():
        # One more than the limit: the query's own job may be among the candidates.
        best = neardup.most_shared(indexes.get(query.scope, {}), query.bands, limit + 1)
        ranked[job_id] = [candidate for candidate in best if candidate != job_id][:limit]
    documents = texts(sorted({c for candidates in ranked.values() for c in candidates}))
    found: dict[uuid.UUID, uuid.UUID] = {}
    for job_id, candidates in ranked.items():
        query = queries[job_id]
        checks = [
            (verify.same_document(documents[c], query.text, min_jaccard=query.min_jaccard), c)
            for c in candidates
            if documents.get(c)
        ]
        accepted = [(check.shingle_jaccard, c) for check, c in checks if check.same]
        if accepted:
            found[job_id] = max(accepted)[1]
    return found
