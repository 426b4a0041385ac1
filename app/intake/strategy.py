"""Which jobs of a chunk the learned router scores, and its verdicts.

A tenant's strategy (``rules``, ``learned`` or ``semantic``) decides how its jobs are
routed. A ``learned`` or ``semantic`` tenant's prompt is embedded once — the vector the
cache's semantic layer then uses too — and scored by the trained router (its quality target,
the job's own or else the tenant's, becomes the router's calibrated cut) or matched against
the catalog's semantic routes. A job whose client pins a model or tier, and a document (the
strategies route questions), are routed by the rules, and their record says why.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from app.cache.keys import request_text
from app.catalog.catalog import Catalog
from app.embeddings.base import Embedder, EmbeddingError
from app.jobs.repository import QueuedJob
from app.routing import semantic, strategies
from app.routing.semantic import SemanticMatch
from app.routing.strategies import LearnedScore, Strategy, TenantRouting
from app.tenants import service as tenant_service

log = logging.getLogger(__name__)


def rules_note(
    *, model_hint: str | None, tier_hint: str | None, document: str | None
) -> str | None:
    """Why a ``learned`` / ``semantic`` tenant's job is routed by the rules; None when its
    strategy routes it."""
    if model_hint is not None:
        return "the client's model wins over the routing strategy"
    if tier_hint is not None:
        return "the client's tier wins over the routing strategy"
    if document is not None:
        return "documents are routed by the rules: the strategies route questions"
    return None


@dataclass
class Decisions:
    """Per tenant its settings; per job the router's verdict, or a note saying why the
    rules route it; the prompt vectors computed (for the cache)."""

    settings: dict[uuid.UUID, TenantRouting]
    verdicts: dict[uuid.UUID, LearnedScore] = field(default_factory=dict)
    matches: dict[uuid.UUID, SemanticMatch] = field(default_factory=dict)
    notes: dict[uuid.UUID, str] = field(default_factory=dict)
    vectors: dict[uuid.UUID, list[float]] = field(default_factory=dict)


def tenant_settings(
    session: Session, *, tenant_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, TenantRouting]:
    """Each tenant's effective routing settings."""
    stored = tenant_service.routing_settings(session, tenant_ids=list(tenant_ids))
    return {
        tenant_id: TenantRouting.of(*stored.get(tenant_id, (None, None)))
        for tenant_id in set(tenant_ids)
    }


def decide(
    session: Session,
    *,
    jobs: Sequence[QueuedJob],
    catalog: Catalog,
    embedder: Callable[[], Embedder],
) -> Decisions:
    """Embed, in one call, the prompts of ``learned`` and ``semantic`` tenants that those
    strategies route, and score or match them; the others are left to the rules."""
    decisions = Decisions(tenant_settings(session, tenant_ids=[job.tenant_id for job in jobs]))
    scored: list[QueuedJob] = []
    for job in jobs:
        if decisions.settings[job.tenant_id].strategy == Strategy.rules:
            continue
        note = rules_note(model_hint=job.model_hint, tier_hint=job.tier_hint,
                          document=job.document)  # fmt: skip
        if note is None:
            scored.append(job)
        else:
            decisions.notes[job.id] = note
    if not scored:
        return decisions
    try:
        model = embedder()
        vectors = model.embed([request_text(prompt=job.prompt, document=None) for job in scored])
    except EmbeddingError as exc:
        _fall_back(decisions, scored, f"embedding failed: {exc}")
        return decisions
    for job, vector in zip(scored, vectors.tolist(), strict=True):
        decisions.vectors[job.id] = vector
    picks = {
        strategy: [i for i, job in enumerate(scored)
                   if decisions.settings[job.tenant_id].strategy == strategy]
        for strategy in (Strategy.learned, Strategy.semantic)
    }  # fmt: skip
    if picks[Strategy.learned]:
        chosen = [scored[i] for i in picks[Strategy.learned]]
        picked = vectors[picks[Strategy.learned]]
        _score(decisions, chosen, picked, catalog=catalog, embedder_name=model.name)
    if picks[Strategy.semantic]:
        chosen = [scored[i] for i in picks[Strategy.semantic]]
        routes = semantic.semantic_router(catalog, model)
        if routes is None:
            _fall_back(decisions, chosen, "the catalog has no semantic routes")
        else:
            matches = routes.match(vectors[picks[Strategy.semantic]])
            for job, match in zip(chosen, matches, strict=True):
                decisions.matches[job.id] = match
    return decisions


def _fall_back(decisions: Decisions, jobs: Sequence[QueuedJob], why: str) -> None:
    # The jobs are not lost: the rules route them, and their record says why.
    log.warning("routing strategy unavailable for %d jobs: %s", len(jobs), why)
    for job in jobs:
        strategy = decisions.settings[job.tenant_id].strategy
        decisions.notes[job.id] = f"{strategy} routing unavailable, routed by the rules: {why}"


def _score(
    decisions: Decisions,
    jobs: Sequence[QueuedJob],
    vectors: NDArray[np.float32],
    *,
    catalog: Catalog,
    embedder_name: str,
) -> None:
    """The learned router's verdicts, each with its quality target's calibrated cut."""
    try:
        router = strategies.learned_router(catalog)
    except strategies.RouterUnavailable as exc:
        _fall_back(decisions, jobs, str(exc))
        return
    if router.embedder_name != embedder_name:
        _fall_back(decisions, jobs, f"the router was trained with {router.embedder_name}; "
                   f"this process embeds with {embedder_name}")  # fmt: skip
        return
    targets = [
        job.quality_target
        if job.quality_target is not None
        else decisions.settings[job.tenant_id].quality_target
        for job in jobs
    ]
    verdicts = strategies.score_prompts(
        router,
        vectors=vectors,
        prompts=[job.prompt or "" for job in jobs],
        targets=targets,
        streams=[job.tenant_id for job in jobs],
    )
    for job, verdict in zip(jobs, verdicts, strict=True):
        decisions.verdicts[job.id] = verdict
