"""What the rest of the system hears when jobs end: the webhook events.

Every transition that ends jobs (completed, failed, cancelled) calls ``jobs_finished`` in the
same transaction, so a result is never stored without the webhook deliveries it owes. This
side reads the ended jobs and builds the public payloads (``JobOut``, ``GroupOut``, as the API
returns them); delivery decides who receives them and records the deliveries.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.delivery import service as delivery_service
from app.jobs import repository
from app.jobs.views import group_out, to_out
from app.ledger import service as ledger_service


def jobs_finished(
    session: Session,
    *,
    job_ids: Sequence[uuid.UUID],
    config: delivery_service.WebhookConfig | None = None,
) -> list[uuid.UUID]:
    """Record the webhook deliveries owed for jobs that just ended; returns the new ids.

    ``job.completed`` / ``job.failed`` for each job, ``group.completed`` for each group whose
    last jobs these were. Safe to call twice: a delivery already recorded for an event and
    receiver is not recorded again. Jobs nobody listens to cost two small queries and no
    row loads (a provider batch of 1,000 jobs ends in one call).
    """
    if not job_ids:
        return []
    own_urls = repository.listening_tenants(session, ids=job_ids)
    if not own_urls:
        return []
    listeners = delivery_service.listeners(session, tenant_ids=sorted(own_urls))
    if not listeners and not any(own_urls.values()):
        return []

    jobs = repository.ended_jobs(session, ids=job_ids)
    # Their cost records were written before, in this transaction.
    savings = ledger_service.savings_of(session, job_ids=[job.id for job in jobs])
    ended = [
        delivery_service.JobEnded(
            tenant_id=job.tenant_id,
            job_id=job.id,
            group_id=job.group_id,
            state=job.state,
            webhook_url=job.webhook_url,
            payload=to_out(job, savings.get(job.id)),
            path=f"/v1/jobs/{job.id}",
            result_bytes=len(job.result.encode()) if job.result else 0,
        )
        for job in jobs
        if listeners.hears_job(job.tenant_id, job.state, job.webhook_url)
    ]
    group_ids = sorted(
        {
            job.group_id
            for job in jobs
            if job.group_id and listeners.hears(job.tenant_id, delivery_service.GROUP_COMPLETED)
        }
    )
    completed: list[delivery_service.GroupCompleted] = []
    # Locking the group serialises transactions ending its last jobs, so one of them is sure
    # to see every job ended (dedup_key makes it harmless when both do).
    for group in repository.lock_groups(session, ids=group_ids):
        out = group_out(session, group)
        if out.done:
            completed.append(
                delivery_service.GroupCompleted(
                    tenant_id=group.tenant_id,
                    group_id=group.id,
                    payload=out,
                    path=f"/v1/groups/{group.id}",
                    results_path=f"/v1/groups/{group.id}/results",
                )
            )
    if not ended and not completed:
        return []
    return delivery_service.record(
        session, listeners=listeners, jobs=ended, groups=completed, config=config
    )
