"""The sweeper: work stuck in a non-terminal state is driven on again."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.batching import repository
from app.batching.escalation import escalate_late
from app.batching.results import retry_for
from app.catalog.catalog import Catalog, get_catalog
from app.jobs import coalescing as jobs_coalescing
from app.jobs import repository as job_repository
from app.jobs import transitions
from app.jobs.repository import BatchMember
from app.jobs.transitions import Retry
from app.kit import queue
from app.models import BatchState, JobState, utcnow

STRANDED = "the provider batch ended without an outcome for this job"


def sweep(
    session: Session,
    *,
    stale_after: timedelta,
    catalog: Catalog | None = None,
    now: datetime | None = None,
    redrive: bool = False,
) -> dict[str, int]:
    """Re-drive work stuck in any non-terminal state for longer than ``stale_after``.

    queued → ingest again; waiting → collect; batched in a batch that is no longer pending →
    back to the window; pending batch → submit again; submitted in a batch that ended without
    an outcome for it → retried or failed; submitted batch not polled → poll; a coalesced
    follower whose leader ended without settling it → ingest again; a batch-mode job whose
    batch will miss its deadline → escalated to a faster path (``escalation``). Enqueues hints
    (or repairs rows) only; the tasks they wake check state again under row locks. Returns
    how many of each it found.

    ``redrive``: hints may have been lost just now (the broker lost its messages, or a worker
    was replaced that may have died holding some), so every hint is sent again whatever its
    work's age: queued jobs, waiting windows, pending batches, and a poll of every submitted
    batch now (poll leases and backoffs dropped). The repairs (orphaned, stranded, followers)
    still wait for ``stale_after``: they read rows that a live worker may be changing.
    """
    now = now or utcnow()
    before = now - stale_after
    hinted = now if redrive else before
    queued = job_repository.stale_jobs(session, state=JobState.queued, before=hinted, limit=50_000)
    for start in range(0, len(queued), 500):
        queue.enqueue(session, queue.INGEST, [str(i) for i in queued[start : start + 500]])
    waiting = job_repository.stale_jobs(session, state=JobState.waiting, before=hinted, limit=1)
    orphans = transitions.release_orphans(
        session, before=before, live=repository.ids_in_state(BatchState.pending)
    )
    if waiting or orphans:
        queue.enqueue(session, queue.COLLECT)
    pending = repository.stale_batches(session, state=BatchState.pending, before=hinted)
    for batch_id in pending:
        queue.enqueue(session, queue.SUBMIT_BATCH, str(batch_id))
    stranded = job_repository.stranded_submitted(
        session,
        before=before,
        limit=10_000,
        open_batches=repository.ids_in_state(BatchState.submitted),
    )
    if stranded:
        _settle_stranded(session, jobs=stranded, catalog=catalog or get_catalog(), now=now)
    stranded_followers = jobs_coalescing.redrive_stranded(session)
    escalated = escalate_late(session, catalog=catalog or get_catalog(), now=now)
    unpolled = repository.stale_batches(session, state=BatchState.submitted, before=before)
    if redrive:
        unpolled = repository.poll_now(session)
    if unpolled:
        queue.enqueue(session, queue.POLL_BATCHES)
    return {
        "queued_jobs": len(queued),
        "waiting_jobs": len(waiting),
        "orphaned_jobs": len(orphans),
        "pending_batches": len(pending),
        "stranded_jobs": len(stranded),
        "unpolled_batches": len(unpolled),
        "stranded_followers": len(stranded_followers),
        "escalated_jobs": escalated,
    }


def _settle_stranded(
    session: Session, *, jobs: list[BatchMember], catalog: Catalog, now: datetime
) -> None:
    """Stranded jobs (locked) are retried in a later batch, or fail once out of attempts."""
    retries: list[Retry] = []
    failed = []
    for job in jobs:
        retry = retry_for(job, catalog=catalog, reason=STRANDED, code=None)
        if retry is None:
            failed.append(job.id)
        else:
            retries.append(retry)
    transitions.requeue(session, retries, from_state=JobState.submitted)
    if failed:
        transitions.fail(
            session, job_ids=failed, error=STRANDED, at=now, from_state=JobState.submitted
        )
    queue.enqueue(session, queue.COLLECT)
