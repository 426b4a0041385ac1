"""`thrifty eval cache`: precision, recall and false-hit rate of the cache on labelled pairs.

Every ``a`` is stored as a cache entry of one throw-away tenant (embedded with the configured
embedder, written to Postgres with its vector); every ``b`` is then looked up by the steps
ingest's ``app.cache.lookup.lookup_jobs`` is made of: the key, scope and text of
``app.cache.keys``, the exact layer (``lookup_many``), the HNSW search within the tenant and
scope (``candidates``) and the second check (``verified``).

It does not call ``lookup_jobs`` itself: that answers with the best verified hit at one
threshold, from the globally configured verifier, and keeps each job's vector in
``job_embeddings`` (rows of real jobs). Here every candidate down to ``SWEEP_FLOOR`` is kept
with the verifier's verdict, so one pass scores the whole threshold sweep, verified and by
plain cosine (``app.cache.scoring``), with the verifier given on the command line.

The caller opens the database (the CLI: ``app.stack.database.migrated_database``) and hands
``evaluate`` a session factory; nothing of the run is committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.cache import neardup, repository, verify
from app.cache.datasets import LabelledPair, companion_pairs, embed_all, read_pairs
from app.cache.documents import check_candidates
from app.cache.keys import DOCUMENT, PROMPT, cache_key, request_text, scope_key
from app.cache.lookup import candidates, lookup_many
from app.cache.report import report
from app.cache.scoring import Outcome
from app.cache.verification import PromptVerifier, prompt_verifier, verified
from app.config import get_settings
from app.embeddings.base import Embedder
from app.kit.prompts import ChatMessage
from app.models import utcnow
from app.tenants import service as tenant_service

EVAL_TIER = "economy"
# Candidates are fetched down to this similarity so that one pass serves the whole sweep.
SWEEP_FLOOR = 0.5


@dataclass(frozen=True)
class EvalRequest:
    """A request as a client sends it (an ``app.kit.prompts.Request``), not a job row."""

    prompt: str | None = None
    document: str | None = None
    instruction: str | None = None
    system: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    history: list[ChatMessage] | None = None


def _request(kind: str, body: str, *, pair: int | None) -> EvalRequest:
    # A pair's own scope comes from an output limit of its own, which is part of both the
    # scope and the key; without a pair every request shares one scope.
    limit = None if pair is None else pair + 1
    if kind == DOCUMENT:
        return EvalRequest(document=body, instruction="summarise", max_output_tokens=limit)
    return EvalRequest(prompt=body, max_output_tokens=limit)


def _text(request: EvalRequest) -> str:
    return request_text(prompt=request.prompt, document=request.document)


def run_lookups(
    session: Session,
    *,
    pairs: list[LabelledPair],
    kind: str,
    embedder: Embedder,
    verifier: PromptVerifier,
    say: Callable[[str], None] = print,
    shared: bool = False,
) -> list[Outcome]:
    """Store every ``a`` in a new tenant, look up every ``b``; nothing is committed.

    By default each pair has a scope of its own, so ``b`` is compared with its own ``a``
    only (the figures are per pair); with ``shared`` every entry is in one scope and a
    lookup may land on another pair's entry, which counts as wrong unless it holds the very
    same text."""
    tenant = tenant_service.get_or_create_tenant(session, name=f"eval-{uuid.uuid4()}")
    try:
        return _run(session, tenant.id, pairs, kind, embedder, verifier, say, shared)
    finally:
        session.rollback()


def _run(
    session: Session,
    tenant_id: uuid.UUID,
    pairs: list[LabelledPair],
    kind: str,
    embedder: Embedder,
    verifier: PromptVerifier,
    say: Callable[[str], None],
    shared: bool,
) -> list[Outcome]:
    # (scope, cache key) -> request text
    stored: dict[tuple[str, str], str] = {}
    for index, pair in enumerate(pairs):
        request = _request(kind, pair.a, pair=None if shared else index)
        where = (scope_key(request, tier=EVAL_TIER), cache_key(request, tier=EVAL_TIER))
        stored.setdefault(where, _text(request))
    keys = list(stored)
    say(f"storing {len(keys)} entries (embedding with {embedder.name})")
    vectors = embed_all(embedder, list(stored.values()), say=say)
    now = utcnow()
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        repository.insert_many(
            session,
            [
                repository.EntryRow(
                    id=uuid.uuid4(), tenant_id=tenant_id, cache_key=key, model="eval",
                    result=stored[(scope, key)], source_job_id=uuid.uuid4(), input_tokens=0,
                    output_tokens=0, hit_count=0, created_at=now, last_hit_at=None,
                    scope_key=scope, kind=kind, request_text=stored[(scope, key)],
                    embedding=[float(x) for x in vectors[start + i]],
                    lsh_bands=(
                        neardup.shingled(stored[(scope, key)]).bands if kind == DOCUMENT else None
                    ),
                )
                for i, (scope, key) in enumerate(chunk)
            ],
        )  # fmt: skip
    session.flush()
    session.execute(text("ANALYZE cache_entries"))

    say(f"looking up {len(pairs)} requests")
    lookups: list[Outcome] = []
    requests = [_request(kind, p.b, pair=None if shared else i) for i, p in enumerate(pairs)]
    texts = [_text(r) for r in requests]
    query_vectors = embed_all(embedder, texts, say=say)
    for index, (pair, request, query, vector) in enumerate(
        zip(pairs, requests, texts, query_vectors, strict=True)
    ):
        # the pair's own entry, or one with the very same text as the request, is right
        right = {_text(_request(kind, pair.a, pair=None)), query} if pair.same else {query}
        lookup = Outcome(same=pair.same)
        key = cache_key(request, tier=EVAL_TIER)
        exact = lookup_many(session, tenant_id=tenant_id, keys=[key])
        if key in exact:
            own = exact[key].request_text in right
            lookup.exact_own, lookup.exact_other = own, not own
        elif kind == DOCUMENT:
            # the near-duplicate path as ingest runs it; plain cosine beside it
            scope = scope_key(request, tier=EVAL_TIER)
            bands = neardup.shingled(query).bands
            entries = repository.near_duplicates(
                session, tenant_id=tenant_id, scope_keys=[scope], bands=bands, since=None
            )
            checked = check_candidates(
                entries, text=query, bands=bands, min_jaccard=verify.MIN_SHINGLE_JACCARD
            )
            lookup.candidates = [
                (c.similarity, c.entry.request_text in right, c.check.same) for c in checked
            ]
            lookup.refused = [c.check.failed for c in checked if not c.check.same]
            cosine = candidates(
                session,
                tenant_id=tenant_id,
                scope=scope,
                embedding=[float(x) for x in vector],
                threshold=SWEEP_FLOOR,
                since=None,
            )
            lookup.cosine_candidates = [
                (c.similarity, c.entry.request_text in right) for c in cosine
            ]
        else:
            found = candidates(
                session,
                tenant_id=tenant_id,
                scope=scope_key(request, tier=EVAL_TIER),
                embedding=[float(x) for x in vector],
                threshold=SWEEP_FLOOR,
                since=None,
            )
            accepted = {
                id(c) for c in verified(kind=kind, text=query, candidates=found, verifier=verifier)
            }
            lookup.candidates = [
                (c.similarity, c.entry.request_text in right, id(c) in accepted) for c in found
            ]
        lookups.append(lookup)
        if index % 2000 == 1999:
            say(f"  looked up {index + 1}/{len(pairs)}")
    return lookups


@dataclass(frozen=True)
class Plan:
    """What `thrifty eval cache` measures: the pairs, their kind, the embedder and verifier,
    and the threshold the report marks as the default."""

    pairs: list[LabelledPair]
    kind: str
    embedder: Embedder
    verifier: PromptVerifier
    threshold: float
    name: str  # the verifier's name in the report


def prepare(
    *,
    pairs_path: Path | None,
    documents: bool,
    data_dir: Path,
    limit: int | None,
    verifier_path: Path | None,
    say: Callable[[str], None] = print,
) -> Plan:
    """Read (or build) the labelled pairs and load the embedder and verifier; no database.
    Raises ``ValueError`` or ``OSError`` for missing or malformed input."""
    from app.embeddings.service import get_embedder

    settings = get_settings()
    embedder = get_embedder()
    kind = DOCUMENT if documents else PROMPT
    if pairs_path is not None:
        pairs = read_pairs(pairs_path, limit=limit)
        say(f"{len(pairs)} pairs from {pairs_path} ({kind}s)")
    else:
        pairs = companion_pairs(data_dir, limit=limit, say=say)
    if not pairs:
        raise ValueError("no labelled pairs to evaluate")
    verifier: PromptVerifier
    if verifier_path is not None:
        from app.cache.trained import TrainedVerifier

        verifier = TrainedVerifier.load(verifier_path)
    else:
        verifier = prompt_verifier()
    threshold = settings.cache_document_threshold if documents else settings.cache_prompt_threshold
    name = "near-duplicate" if documents else verifier.name
    return Plan(pairs, kind, embedder, verifier, threshold, name)


def evaluate(
    plan: Plan,
    *,
    sessions: Callable[[], Session],
    shared: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """`thrifty eval cache`: run the lookups on a session of ``sessions`` (a migrated
    database), print the report and return its ``key=value`` figures."""
    with sessions() as session:
        lookups = run_lookups(
            session,
            pairs=plan.pairs,
            kind=plan.kind,
            embedder=plan.embedder,
            verifier=plan.verifier,
            say=say,
            shared=shared,
        )
    return report(lookups, default_threshold=plan.threshold, verifier_name=plan.name, say=say)
