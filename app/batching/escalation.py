"""Deadline escalation: a batch-mode job whose batch has not ended ``escalation_margin_seconds``
before the job's deadline (the provider is late, or the batch has not even left) is sent
again on a faster path, flex when the time left allows flex's latency and the model offers
it, realtime otherwise. Its batch's late line is then ignored when it arrives: the job is no
longer a member of that batch, and ``results.apply_outcomes`` records the line as superseded
in the ledger (``superseded_lines``) instead of completing the job a second time.

A coalesced follower whose leader has not been answered by then (a patient job rides a
slower leader, ``app/intake/coalescing.py``) is escalated the same way: it stops following
and goes on its own path (the leader goes on; nothing of its answer is superseded)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.batching import repository
from app.catalog.catalog import Catalog, ModelConfig
from app.jobs import escalation as job_escalation
from app.jobs.escalation import Escalation, LateJob
from app.kit import queue
from app.models import JobMode

log = logging.getLogger(__name__)

# Jobs looked at per provider and sweep; the rest wait for the next sweep (seconds later).
BATCH_LIMIT = 5_000


def escalate_late(session: Session, *, catalog: Catalog, now: datetime) -> int:
    """Escalate every batch-mode job due (see the module); returns how many moved."""
    moved = 0
    for name, config in catalog.providers.items():
        margin = timedelta(seconds=config.escalation_margin_seconds)
        late = job_escalation.due(
            session,
            provider=name,
            by=now + margin,
            open_batches=repository.open_batch_ids(),
            limit=BATCH_LIMIT,
        )
        if not late:
            continue
        locked = set(
            repository.lock_open_batches(session, batch_ids=sorted({job.waits_on for job in late}))
        )
        escalations = [
            step
            for job in late
            if job.waits_on in locked
            and (step := _faster_path(job, catalog=catalog, provider=name, now=now)) is not None
        ]
        moved += len(job_escalation.escalate(session, escalations))
    for name, config in catalog.providers.items():
        margin = timedelta(seconds=config.escalation_margin_seconds)
        followers = job_escalation.late_followers(
            session, provider=name, by=now + margin, limit=BATCH_LIMIT
        )
        detached = [
            step
            for job in followers
            if (step := _faster_path(job, catalog=catalog, provider=name, now=now, leader=True))
            is not None
        ]
        moved += len(job_escalation.detach_followers(session, detached))
    if moved:
        log.info("escalated %d jobs whose batch or leader would miss their deadline", moved)
        queue.enqueue(session, queue.COLLECT)
    return moved


def _faster_path(
    job: LateJob, *, catalog: Catalog, provider: str, now: datetime, leader: bool = False
) -> Escalation | None:
    """The job's model on its provider's realtime path, or, for a provider reached by batch
    only (Anthropic), the first model of its fallback chain that has one and holds the input;
    flex instead of realtime when the time left allows flex's latency. None: no faster path
    (the model left the catalog, or no model of the chain has one)."""
    if not catalog.has_model(job.model):
        return None
    margin = catalog.providers[provider].escalation_margin_seconds
    model: ModelConfig | None = catalog.model(job.model)
    if not catalog.providers[provider].has_realtime:
        tokens = job.estimated_tokens or 0
        model = next(
            (
                step
                for step in catalog.fallback_chain(job.model)
                if catalog.providers[step.provider].has_realtime and step.context_tokens >= tokens
            ),
            None,
        )
    if model is None:
        return None
    config = catalog.providers[model.provider]
    left = (job.deadline - now).total_seconds()
    mode = JobMode.realtime
    if catalog.offers_flex(model.name) and left >= config.flex_latency_seconds:
        mode = JobMode.flex
    where = "" if model.name == job.model else f" on {model.name}, next in {job.model}'s chain"
    late = (
        "the identical request it followed had not been answered"
        if leader
        else "its batch had not ended"
    )
    reason = f"escalated to {mode.value}{where}: {late} {margin:g} s before the deadline"
    if not leader:
        reason += "; a late batch answer is ignored"
    return Escalation(job.id, job.waits_on, model.provider, model.name, mode, reason)
