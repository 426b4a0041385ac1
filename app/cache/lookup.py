"""Reading the cache at ingest: the exact layer, then the semantic layer and its check.

``lookup_jobs`` is composed of the steps below (``lookup_many``, ``search`` for the nearest
entries, ``verified``); ``app.cache.evaluation`` measures the cache by calling the same steps
(``candidates`` asks for one prompt's nearest entries, ingest for a whole chunk's), and
``python -m bench.cache`` times ``search``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from app.cache import job_embeddings, metrics, neardup, repository
from app.cache.documents import DocumentQuery, lookup_documents
from app.cache.inflight import NearQuery
from app.cache.keys import DOCUMENT, cache_key, kind_of, request_text, scope_key, semantic_allowed
from app.cache.policy import Policy, policy
from app.cache.sizes import SearchPath, scope_sizes
from app.cache.verification import Candidate, prompt_verifier, verified
from app.cache.verify import MIN_SHINGLE_JACCARD
from app.config import get_settings
from app.embeddings.base import Embedder, EmbeddingError
from app.kit.prompts import CacheableRequest
from app.models import CacheEntry, CacheMode, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    entry: CacheEntry
    similarity: float
    semantic: bool


@dataclass
class _Pending:
    job: CacheableRequest
    scope: str
    kind: str
    text: str
    embedding: list[float] | None = field(default=None)
    bands: list[int] | None = field(default=None)


@dataclass(frozen=True)
class Lookup:
    """What the cache said about a list of jobs: hits, the key each job's answer is written
    under (none for ``bypass``), and the prompt vectors computed for the misses (for a
    routing strategy that needs one: the request is embedded at most once)."""

    hits: dict[uuid.UUID, Hit]
    keys: dict[uuid.UUID, str]
    embeddings: dict[uuid.UUID, list[float]] = field(default_factory=dict)
    # The documents that missed and may be answered by a near-duplicate: what coalescing
    # needs to look for one in flight (``app.cache.inflight``).
    near: dict[uuid.UUID, NearQuery] = field(default_factory=dict)


def lookup_jobs(
    session: Session,
    *,
    jobs: Sequence[CacheableRequest],
    tiers: dict[uuid.UUID, str],
    embedder: Callable[[], Embedder],
    embeddings: Mapping[uuid.UUID, list[float]] | None = None,
    cache_keys: Mapping[uuid.UUID, str] | None = None,
) -> Lookup:
    """Answer routed jobs from the cache: exact match first (no embedding), then for the
    misses the semantic layer: documents by their near-duplicate band keys and the full-text
    check, prompts by one embedding call for the whole list, HNSW and the verifier.

    ``embeddings``: prompt vectors computed already (a routing strategy's, of the same
    text): those prompts are not embedded again. ``cache_keys``: the jobs' keys computed
    already (ingest's coalescing asks with them): not hashed again.

    Every job that is not ``bypass`` gets a cache key, under which the poller writes its
    answer. What the misses' lookup computed (vectors, band keys) is saved, so the poller
    writes it with the answer.
    """
    now = utcnow()
    hits: dict[uuid.UUID, Hit] = {}
    keys: dict[uuid.UUID, str] = {}
    pending: list[_Pending] = []
    policies: dict[uuid.UUID, Policy] = {}
    by_tenant: dict[uuid.UUID, list[CacheableRequest]] = {}
    for job in jobs:
        if job.cache_mode == CacheMode.bypass:
            continue
        known = cache_keys.get(job.id) if cache_keys else None
        keys[job.id] = known or cache_key(job, tier=tiers[job.id])
        by_tenant.setdefault(job.tenant_id, []).append(job)

    for tenant_id, tenant_jobs in by_tenant.items():
        rules = policies[tenant_id] = policy(session, tenant_id=tenant_id)
        readable = [j for j in tenant_jobs if j.cache_mode == CacheMode.default]
        found = lookup_many(
            session,
            tenant_id=tenant_id,
            keys=[keys[j.id] for j in readable],
            since=rules.since(now),
            now=now,
        )
        for job in tenant_jobs:
            entry = found.get(keys[job.id]) if job.cache_mode == CacheMode.default else None
            if entry is not None:
                hits[job.id] = Hit(entry, 1.0, semantic=False)
            elif rules.semantic_enabled:  # a vector is useless to a tenant without the layer
                text = request_text(prompt=job.prompt, document=job.document)
                pending.append(
                    _Pending(job, scope_key(job, tier=tiers[job.id]), kind_of(job), text,
                             embedding=(embeddings or {}).get(job.id))
                )  # fmt: skip

    if not pending:
        return Lookup(hits, keys)
    documents = [p for p in pending if p.kind == DOCUMENT]
    prompts = [p for p in pending if p.kind != DOCUMENT]
    for item in documents:
        item.bands = neardup.shingled(item.text).bands
    _embed([p for p in prompts if p.embedding is None], embedder)
    job_embeddings.save_job_embeddings(
        session,
        [
            job_embeddings.JobEmbeddingRow(job_id=p.job.id, scope_key=p.scope, kind=p.kind,
                                       embedding=p.embedding, lsh_bands=p.bands, created_at=now)
            for p in pending
            if p.embedding is not None or p.bands is not None
        ],
    )  # fmt: skip

    def wanted(item: _Pending) -> bool:
        return policies[item.job.tenant_id].semantic_enabled and semantic_allowed(item.job)

    hit_entries: list[uuid.UUID] = []
    near = lookup_documents(
        session,
        queries=[
            DocumentQuery(p.job.id, p.job.tenant_id, p.scope, p.text, p.bands)
            for p in documents
            if p.bands is not None and wanted(p)
        ],
        thresholds={t: rules.threshold(DOCUMENT) for t, rules in policies.items()},
        since={t: rules.since(now) for t, rules in policies.items()},
    )
    for job_id, checked in near.items():
        hits[job_id] = Hit(checked.entry, checked.similarity, semantic=True)
        hit_entries.append(checked.entry.id)
    unanswered = {
        p.job.id: NearQuery(
            p.scope,
            p.text,
            p.bands,
            max(policies[p.job.tenant_id].threshold(DOCUMENT), MIN_SHINGLE_JACCARD),
        )
        for p in documents
        if p.bands is not None and wanted(p) and p.job.id not in hits
    }

    searching = [p for p in prompts if p.embedding is not None and wanted(p)]
    checker = prompt_verifier()
    nearest = search(
        session,
        queries=[
            repository.VectorQuery(item.job.tenant_id, item.scope, item.embedding,
                                   policies[item.job.tenant_id].since(now))
            for item in searching
            if item.embedding is not None
        ],
    )  # fmt: skip
    for item, neighbours in zip(searching, nearest, strict=True):
        threshold = policies[item.job.tenant_id].threshold(item.kind)
        best = verified(
            kind=item.kind,
            text=item.text,
            candidates=[Candidate(entry, sim) for entry, sim in neighbours if sim >= threshold],
            verifier=checker,
        )
        if best:
            hits[item.job.id] = Hit(best[0].entry, best[0].similarity, semantic=True)
            hit_entries.append(best[0].entry.id)
    repository.count_hits(session, entry_ids=hit_entries, now=now)
    semantic = sum(1 for hit in hits.values() if hit.semantic)
    metrics.count_lookups(
        exact=len(hits) - semantic, semantic=semantic, misses=len(keys) - len(hits)
    )
    embeddings = {p.job.id: p.embedding for p in prompts if p.embedding is not None}
    return Lookup(hits, keys, embeddings, unanswered)


def _embed(items: list[_Pending], embedder: Callable[[], Embedder]) -> None:
    """One embedding call for all ``items``; on failure they keep no vector."""
    if not items:
        return
    try:
        vectors = embedder().embed([p.text for p in items])
    except EmbeddingError:
        # The exact layer still works; these jobs are answered by the provider and written
        # back without a vector (exact match only).
        log.warning("embedding %d requests failed; semantic cache skipped", len(items),
                    exc_info=True)  # fmt: skip
        return
    for item, vector in zip(items, vectors.tolist(), strict=True):
        item.embedding = vector


def lookup_many(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    keys: list[str],
    since: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, CacheEntry]:
    """Entries of ``tenant_id`` for any of ``keys`` (written after ``since``); hits are counted."""
    found = repository.find_many(session, tenant_id=tenant_id, keys=sorted(set(keys)), since=since)
    repository.count_hits(
        session, entry_ids=[entry.id for entry in found.values()], now=now or utcnow()
    )
    return found


def search_paths(
    session: Session, *, queries: Sequence[repository.VectorQuery]
) -> list[SearchPath]:
    """How each query's scope is searched: ``exact`` (every row of a scope holding fewer than
    ``cache_exact_below`` entries), else ``hnsw`` (app/cache/sizes.py)."""
    paths = scope_sizes.paths(
        session,
        scopes=[(q.tenant_id, q.scope_key) for q in queries],
        exact_below=get_settings().cache_exact_below,
    )
    return [paths[(q.tenant_id, q.scope_key)] for q in queries]


def search(
    session: Session,
    *,
    queries: Sequence[repository.VectorQuery],
    ef_search: int | None = None,
    path: SearchPath | None = None,
) -> list[list[tuple[CacheEntry, float]]]:
    """The configured number of nearest entries (cosine similarity, best first) of each
    query's tenant and scope, in the queries' order: small scopes searched exactly, the
    others by HNSW with ``ef_search`` (default ``cache_ef_search``) and pgvector's iterative
    scan. ``path`` forces one way for every query (tests and benchmarks)."""
    if not queries:
        return []
    paths = [path] * len(queries) if path else search_paths(session, queries=queries)
    found: list[list[tuple[CacheEntry, float]]] = [[] for _ in queries]
    limit = get_settings().cache_candidates
    for way in ("exact", "hnsw"):
        chosen = [i for i, p in enumerate(paths) if p == way]
        if not chosen:
            continue
        if way == "hnsw":
            breadth = ef_search or get_settings().cache_ef_search
            repository.set_search_breadth(session, ef_search=breadth)
        results = repository.nearest_many(
            session, queries=[queries[i] for i in chosen], limit=limit, exact=way == "exact"
        )
        for i, nearest in zip(chosen, results, strict=True):
            found[i] = nearest
    return found


def candidates(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    scope: str,
    embedding: list[float],
    threshold: float,
    since: datetime | None,
) -> list[Candidate]:
    """The configured number of nearest entries of the tenant and scope, those at least
    ``threshold`` similar, best first (not yet verified)."""
    (found,) = search(session, queries=[repository.VectorQuery(tenant_id, scope, embedding, since)])
    return [Candidate(entry, sim) for entry, sim in found if sim >= threshold]
