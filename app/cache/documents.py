"""The document path of the semantic layer: near-duplicate candidates from the LSH band keys
(``app.cache.neardup``), then the full-text check (``app.cache.verify.same_document``).

No embedding is computed for a document: the question is whether it is the same document,
lightly edited, and that is decided on its shingles, figures and names. A candidate's
similarity is the shingle Jaccard of the two texts; the tenant's ``document_threshold`` is
the least Jaccard a candidate needs (and the check's own floor is
``verify.MIN_SHINGLE_JACCARD``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.cache import neardup, repository, verify
from app.config import get_settings
from app.models import CacheEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    """A candidate entry and the near-duplicate decision about it."""

    entry: CacheEntry
    check: verify.DocumentCheck

    @property
    def similarity(self) -> float:
        return self.check.shingle_jaccard


@dataclass(frozen=True)
class DocumentQuery:
    """One document to look up: where (tenant, scope), its text and its band keys."""

    key: uuid.UUID
    tenant_id: uuid.UUID
    scope: str
    text: str
    bands: list[int]


def check_candidates(
    entries: Sequence[CacheEntry], *, text: str, bands: list[int], min_jaccard: float
) -> list[Checked]:
    """The entries that share a band key with ``bands``, ranked by shared keys, the best
    ``cache_candidates`` checked against ``text``; best (highest Jaccard) first."""
    return _checked(_by_band(entries), text=text, bands=bands, min_jaccard=min_jaccard)


def _by_band(entries: Sequence[CacheEntry]) -> dict[int, list[CacheEntry]]:
    return neardup.band_index((entry, entry.lsh_bands) for entry in entries)


def _checked(
    index: dict[int, list[CacheEntry]], *, text: str, bands: list[int], min_jaccard: float
) -> list[Checked]:
    checked = [
        Checked(
            entry, verify.same_document(entry.request_text or "", text, min_jaccard=min_jaccard)
        )
        for entry in neardup.most_shared(index, bands, get_settings().cache_candidates)
    ]
    return sorted(checked, key=lambda c: -c.similarity)


def lookup_documents(
    session: Session,
    *,
    queries: Sequence[DocumentQuery],
    thresholds: dict[uuid.UUID, float],
    since: dict[uuid.UUID, datetime | None],
) -> dict[uuid.UUID, Checked]:
    """The best verified near-duplicate of each query (by ``key``), one index query per
    tenant. A query without a verified candidate is absent."""
    by_tenant: dict[uuid.UUID, list[DocumentQuery]] = {}
    for query in queries:
        by_tenant.setdefault(query.tenant_id, []).append(query)
    found: dict[uuid.UUID, Checked] = {}
    for tenant_id, tenant_queries in by_tenant.items():
        entries = repository.near_duplicates(
            session,
            tenant_id=tenant_id,
            scope_keys=sorted({q.scope for q in tenant_queries}),
            bands=[key for q in tenant_queries for key in q.bands],
            since=since.get(tenant_id),
        )
        by_scope: dict[str | None, list[CacheEntry]] = {}
        for entry in entries:
            by_scope.setdefault(entry.scope_key, []).append(entry)
        indexes = {scope: _by_band(found) for scope, found in by_scope.items()}
        for query in tenant_queries:
            checked = _checked(
                indexes.get(query.scope, {}),
                text=query.text,
                bands=query.bands,
                min_jaccard=max(thresholds[tenant_id], verify.MIN_SHINGLE_JACCARD),
            )
            accepted = [c for c in checked if c.check.same]
            for refused in checked:
                if not refused.check.same:
                    log.debug("document candidate %s refused: %s", refused.entry.id,
                              refused.check.reason)  # fmt: skip
            if accepted:
                found[query.key] = accepted[0]
    return found
