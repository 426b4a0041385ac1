"""The cache: an exact layer (a hash of the request's scope and normalised text), then a
semantic layer (pgvector HNSW, cosine) whose candidates must pass a second check.

Scope is tenant, model tier, instruction, system prompt, output limit and temperature, so an
answer is only reused for the same question asked the same way by the same tenant. The
semantic layer compares only entries of the same tenant and scope, and a candidate is
returned only when ``app.cache.verify`` (or a trained verifier) agrees it is the same request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from app.cache import repository, verify
from app.config import get_settings
from app.embeddings.base import Embedder, EmbeddingError
from app.kit.prompts import CacheableRequest, Request, instruction_text, user_content
from app.kit.text import normalise
from app.models import CacheEntry, CacheSettings, utcnow

log = logging.getLogger(__name__)

PROMPT, DOCUMENT = "prompt", "document"
CACHE_MODES = ("default", "bypass", "refresh")


@dataclass(frozen=True)
class CacheWrite:
    tenant_id: uuid.UUID
    cache_key: str
    model: str
    result: str
    source_job_id: uuid.UUID
    input_tokens: int
    output_tokens: int


def cache_key(job: Request, *, tier: str) -> str:
    """Key for ``job`` routed to a model of ``tier`` (the tenant is a column beside it)."""
    scope: dict[str, object] = {
        "tier": tier,
        "system": normalise(job.system) if job.system else None,
        "max_output_tokens": job.max_output_tokens,
        "text": normalise(user_content(job)),
    }
    if job.temperature is not None:
        scope["temperature"] = round(job.temperature, 4)
    return hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()


def kind_of(job: Request) -> str:
    return DOCUMENT if job.document is not None else PROMPT


def scope_key(job: Request, *, tier: str) -> str:
    """The scope without the request text: semantic lookups compare only within one scope."""
    scope: dict[str, object] = {
        "kind": kind_of(job),
        "tier": tier,
        "instruction": (
            normalise(instruction_text(job.instruction or "")) if job.document is not None else None
        ),
        "system": normalise(job.system) if job.system else None,
        "max_output_tokens": job.max_output_tokens,
        "temperature": round(job.temperature, 4) if job.temperature is not None else None,
    }
    return hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()


def request_text(job: Request) -> str:
    """What is embedded and verified: the document (its instruction is in the scope) or prompt."""
    return normalise(job.document if job.document is not None else (job.prompt or ""))


def semantic_allowed(job: CacheableRequest) -> bool:
    """Sampling (temperature > 0) asks for variety: no semantic reuse unless opted in."""
    if job.cache_mode != "default" or job.semantic_cache is False:
        return False
    return bool(job.semantic_cache) or not job.temperature


# --- tenant policy -------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    semantic_enabled: bool
    prompt_threshold: float
    document_threshold: float
    ttl_seconds: int | None
    max_entries: int

    def since(self, now: datetime) -> datetime | None:
        return now - timedelta(seconds=self.ttl_seconds) if self.ttl_seconds else None

    def threshold(self, kind: str) -> float:
        return self.document_threshold if kind == DOCUMENT else self.prompt_threshold


def policy(session: Session, *, tenant_id: uuid.UUID) -> Policy:
    """The tenant's cache settings, with service defaults for what it did not set."""
    settings = get_settings()
    row = repository.get_settings(session, tenant_id=tenant_id)
    return Policy(
        semantic_enabled=row.semantic_enabled if row else True,
        prompt_threshold=_pick(
            row.prompt_threshold if row else None, settings.cache_prompt_threshold
        ),
        document_threshold=_pick(
            row.document_threshold if row else None, settings.cache_document_threshold
        ),
        ttl_seconds=row.ttl_seconds if row and row.ttl_seconds else settings.cache_ttl_seconds,
        max_entries=row.max_entries if row and row.max_entries else settings.cache_max_entries,
    )


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value


def update_policy(session: Session, *, tenant_id: uuid.UUID, values: dict[str, object]) -> Policy:
    """Set some of the tenant's cache settings (``None`` resets one to the default)."""
    row = repository.get_settings(session, tenant_id=tenant_id)
    if row is None:
        row = CacheSettings(tenant_id=tenant_id, semantic_enabled=True)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, True if name == "semantic_enabled" and value is None else value)
    session.flush()
    return policy(session, tenant_id=tenant_id)


# --- verification --------------------------------------------------------------------------


class PromptVerifier(Protocol):
    name: str

    def accepts(self, pairs: list[tuple[str, str]]) -> list[bool]:
        """For each (request, cached request): is it the same question?"""
        ...


class RuleVerifier:
    """Numbers, negation and names must agree (``app.cache.verify.same_prompt``)."""

    name = "rules"

    def accepts(self, pairs: list[tuple[str, str]]) -> list[bool]:
        return [verify.same_prompt(a, b) for a, b in pairs]


_verifier_lock = threading.Lock()
_verifiers: dict[str, PromptVerifier] = {}


def prompt_verifier() -> PromptVerifier:
    """The configured short-prompt verifier, loaded once per process."""
    path = get_settings().cache_verifier_path
    key = str(path) if path else "rules"
    with _verifier_lock:
        if key not in _verifiers:
            if path is None:
                _verifiers[key] = RuleVerifier()
            else:
                from app.cache.trained import TrainedVerifier

                _verifiers[key] = TrainedVerifier.load(path)
        return _verifiers[key]


@dataclass(frozen=True)
class Candidate:
    entry: CacheEntry
    similarity: float


def verified(
    *, kind: str, text: str, candidates: list[Candidate], verifier: PromptVerifier
) -> list[Candidate]:
    """The candidates that pass the second check, best first."""
    if kind == DOCUMENT:
        return [
            c for c in candidates if verify.same_document(c.entry.request_text or "", text).same
        ]
    accepted = verifier.accepts([(text, c.entry.request_text or "") for c in candidates])
    return [c for c, ok in zip(candidates, accepted, strict=True) if ok]


def semantic_lookup(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    scope: str,
    kind: str,
    text: str,
    embedding: list[float],
    threshold: float,
    since: datetime | None,
    verifier: PromptVerifier,
) -> list[Candidate]:
    """Verified entries of the tenant and scope at least ``threshold`` similar, best first."""
    settings = get_settings()
    found = repository.nearest(
        session,
        tenant_id=tenant_id,
        scope_key=scope,
        embedding=embedding,
        limit=settings.cache_candidates,
        since=since,
    )
    candidates = [Candidate(entry, sim) for entry, sim in found if sim >= threshold]
    return verified(kind=kind, text=text, candidates=candidates, verifier=verifier)


# --- ingest --------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Lookup:
    """What the cache said about a list of jobs: hits, and the key each job's answer is
    written under (none for ``bypass``)."""

    hits: dict[uuid.UUID, Hit]
    keys: dict[uuid.UUID, str]


def lookup_jobs(
    session: Session,
    *,
    jobs: Sequence[CacheableRequest],
    tiers: dict[uuid.UUID, str],
    embedder: Callable[[], Embedder],
) -> Lookup:
    """Answer routed jobs from the cache: exact match first, then semantic plus verification.

    Every job that is not ``bypass`` gets a cache key, under which the poller writes its
    answer. The embeddings of jobs that miss are computed in one call for the whole list and
    saved, so the poller writes the same vector with the answer.
    """
    now = utcnow()
    hits: dict[uuid.UUID, Hit] = {}
    keys: dict[uuid.UUID, str] = {}
    pending: list[_Pending] = []
    policies: dict[uuid.UUID, Policy] = {}
    by_tenant: dict[uuid.UUID, list[CacheableRequest]] = {}
    for job in jobs:
        if job.cache_mode == "bypass":
            continue
        keys[job.id] = cache_key(job, tier=tiers[job.id])
        by_tenant.setdefault(job.tenant_id, []).append(job)

    for tenant_id, tenant_jobs in by_tenant.items():
        rules = policies[tenant_id] = policy(session, tenant_id=tenant_id)
        readable = [j for j in tenant_jobs if j.cache_mode == "default"]
        found = lookup_many(
            session,
            tenant_id=tenant_id,
            keys=[keys[j.id] for j in readable],
            since=rules.since(now),
            now=now,
        )
        for job in tenant_jobs:
            entry = found.get(keys[job.id]) if job.cache_mode == "default" else None
            if entry is not None:
                hits[job.id] = Hit(entry, 1.0, semantic=False)
            elif rules.semantic_enabled:  # a vector is useless to a tenant without the layer
                pending.append(
                    _Pending(
                        job, scope_key(job, tier=tiers[job.id]), kind_of(job), request_text(job)
                    )
                )

    if not pending:
        return Lookup(hits, keys)
    try:
        vectors = embedder().embed([p.text for p in pending])
    except EmbeddingError:
        # The exact layer still works; these jobs are answered by the provider and written
        # back without a vector (exact match only).
        log.warning(
            "embedding %d requests failed; semantic cache skipped", len(pending), exc_info=True
        )
        return Lookup(hits, keys)
    for item, vector in zip(pending, vectors, strict=True):
        item.embedding = [float(x) for x in vector]
    repository.save_job_embeddings(
        session,
        [
            {"job_id": p.job.id, "scope_key": p.scope, "kind": p.kind, "embedding": p.embedding,
             "created_at": now}
            for p in pending
        ],
    )  # fmt: skip

    settings = get_settings()
    repository.set_search_breadth(session, ef_search=settings.cache_ef_search)
    checker = prompt_verifier()
    hit_entries: list[uuid.UUID] = []
    for item in pending:
        rules = policies[item.job.tenant_id]
        if not (rules.semantic_enabled and semantic_allowed(item.job)) or item.embedding is None:
            continue
        best = semantic_lookup(
            session,
            tenant_id=item.job.tenant_id,
            scope=item.scope,
            kind=item.kind,
            text=item.text,
            embedding=item.embedding,
            threshold=rules.threshold(item.kind),
            since=rules.since(now),
            verifier=checker,
        )
        if best:
            hits[item.job.id] = Hit(best[0].entry, best[0].similarity, semantic=True)
            hit_entries.append(best[0].entry.id)
    repository.count_hits(session, entry_ids=hit_entries, now=now)
    return Lookup(hits, keys)


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


# --- writes, eviction, invalidation --------------------------------------------------------


def store_many(session: Session, writes: list[CacheWrite]) -> None:
    """Remember answers; the first answer stored under a key stays, unless the job asked for
    ``cache: refresh``. The embedding computed at ingest is stored with the answer (never
    recomputed); then each tenant's TTL and entry limit are enforced."""
    if not writes:
        return
    job_ids = [w.source_job_id for w in writes]
    embedded = repository.job_embeddings(session, job_ids=job_ids)
    modes = repository.job_cache_modes(session, job_ids=job_ids)
    now = utcnow()
    keep: list[dict[str, object]] = []
    replace: list[dict[str, object]] = []
    for w in writes:
        row: dict[str, object] = {
            "id": uuid.uuid4(),
            "tenant_id": w.tenant_id,
            "cache_key": w.cache_key,
            "model": w.model,
            "result": w.result,
            "source_job_id": w.source_job_id,
            "input_tokens": w.input_tokens,
            "output_tokens": w.output_tokens,
            "hit_count": 0,
            "created_at": now,
            "last_hit_at": None,
            "scope_key": None,
            "kind": None,
            "request_text": None,
            "embedding": None,
        }
        if w.source_job_id in embedded:
            emb, job = embedded[w.source_job_id]
            row.update(
                scope_key=emb.scope_key,
                kind=emb.kind,
                request_text=request_text(job),
                embedding=emb.embedding,
            )
        (replace if modes.get(w.source_job_id) == "refresh" else keep).append(row)
    # One row per key per statement: Postgres refuses to touch a row twice in one upsert.
    repository.insert_many(session, _first_per_key(keep))
    repository.insert_many(session, _first_per_key(replace), replace=True)
    repository.delete_job_embeddings(session, job_ids=list(embedded))
    for tenant_id in {w.tenant_id for w in writes}:
        enforce_limits(session, tenant_id=tenant_id, now=now)


def _first_per_key(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    seen: dict[tuple[object, object], dict[str, object]] = {}
    for row in rows:
        seen.setdefault((row["tenant_id"], row["cache_key"]), row)
    return list(seen.values())


def enforce_limits(session: Session, *, tenant_id: uuid.UUID, now: datetime | None = None) -> int:
    """Drop the tenant's expired entries, then the least recently used over its limit."""
    rules = policy(session, tenant_id=tenant_id)
    since = rules.since(now or utcnow())
    removed = repository.delete_expired(session, tenant_id=tenant_id, before=since) if since else 0
    excess = repository.count_entries(session, tenant_id=tenant_id) - rules.max_entries
    if excess > 0:
        removed += repository.evict_least_recent(session, tenant_id=tenant_id, count=excess)
    return removed


def invalidate(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    entry_ids: list[uuid.UUID],
    source_job_ids: list[uuid.UUID],
    everything: bool = False,
) -> int:
    """Delete the tenant's entries by id or by the job that produced them (or all of them)."""
    return repository.invalidate(
        session,
        tenant_id=tenant_id,
        entry_ids=entry_ids,
        source_job_ids=source_job_ids,
        everything=everything,
    )


def count_entries(session: Session, *, tenant_id: uuid.UUID) -> int:
    return repository.count_entries(session, tenant_id=tenant_id)
