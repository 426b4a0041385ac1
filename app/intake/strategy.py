"""Which jobs of a chunk the learned router scores, and its verdicts.

A tenant's strategy (``rules`` or ``learned``) decides how its jobs are routed. A ``learned``
tenant's prompt is embedded once — the vector the cache's semantic layer then uses too —
and scored by the trained router; its quality target (the job's own, else the tenant's)
becomes the router's calibrated cut. A job whose client pins a model or tier, and a
document (the router scores questions), are routed by the rules, and their record says why.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.cache.keys import request_text
from app.catalog.catalog import Catalog
from app.embeddings.base import Embedder, EmbeddingError
from app.jobs.repository import QueuedJob
from app.routing import strategies
from app.routing.strategies import LearnedScore, Strategy, TenantRouting
from app.tenants import service as tenant_service

log = logging.getLogger(__name__)


def rules_note(
    *, model_hint: str | None, tier_hint: str | None, document: str | None
) -> str | None:
    """Why a ``learned`` tenant's job is routed by the rules; None when the router scores it."""
    if model_hint is not None:
        return "the client's model wins over the learned router"
    if tier_hint is not None:
        return "the client's tier wins over the learned router"
    if document is not None:
        return "documents are routed by the rules: the learned router scores questions"
    return None


@dataclass
class Decisions:
    """Per tenant its settings; per job the router's verdict, or a note saying why the
    rules route it; the prompt vectors computed (for the cache)."""

    settings: dict[uuid.UUID, TenantRouting]
    verdicts: dict[uuid.UUID, LearnedScore] = field(default_factory=dict)
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
    """Score the jobs of ``learned`` tenants that the learned router routes (one embedding
    call for all of them); the others are left to the rules."""
    decisions = Decisions(tenant_settings(session, tenant_ids=[job.tenant_id for job in jobs]))
    scored: list[QueuedJob] = []
    for job in jobs:
        if decisions.settings[job.tenant_id].strategy != Strategy.learned:
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
        router = strategies.learned_router(catalog)
        model = embedder()
        if model.name != router.embedder_name:
            raise strategies.RouterUnavailable(
                f"the router was trained with {router.embedder_name}; this process embeds "
                f"with {model.name}"
            )
        texts = [request_text(prompt=job.prompt, document=None) for job in scored]
        vectors = model.embed(texts)
    except (strategies.RouterUnavailable, EmbeddingError) as exc:
        # The jobs are not lost: the rules route them, and their record says why.
        log.warning("learned routing unavailable for %d jobs: %s", len(scored), exc)
        for job in scored:
            decisions.notes[job.id] = f"learned routing unavailable, routed by the rules: {exc}"
        return decisions
    targets = [
        job.quality_target
        if job.quality_target is not None
        else decisions.settings[job.tenant_id].quality_target
        for job in scored
    ]
    verdicts = strategies.score_prompts(
        router, vectors=vectors, prompts=[job.prompt or "" for job in scored], targets=targets
    )
    for job, verdict, vector in zip(scored, verdicts, vectors.tolist(), strict=True):
        decisions.verdicts[job.id] = verdict
        decisions.vectors[job.id] = vector
    return decisions
