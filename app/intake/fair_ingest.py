"""Ingest in a weighted fair share across tenants: a tenant that submits 20,000 jobs does not
hold up a small tenant's ten behind its backlog.

An ingest message is a hint that some jobs are queued, not an order to ingest those ones: the
task claims the next jobs from Postgres, shared among the tenants that have queued jobs in
proportion to their weights (as a window's claims are, ``app.batching.fairness``), oldest
first inside each tenant's share. Each message claims as many jobs as it names, so the
messages of every submission still cover every job queued; whichever process takes a
message takes the fairest jobs at that moment.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from app.batching.fairness import fair_quotas, interleave
from app.catalog.catalog import Catalog
from app.embeddings.base import Embedder
from app.intake.ingest import ingest
from app.jobs import queued as queued_jobs
from app.tenants import service as tenant_service


def claim_fairly(session: Session, *, limit: int) -> list[uuid.UUID]:
    """Lock up to ``limit`` queued jobs: each tenant's weighted fair share of them (a tenant
    that needs less than its share takes what it needs, the rest goes to the others), in an
    interleaved order. Rows another ingest process holds are skipped; a share one tenant
    cannot fill for that reason is offered to the others again."""
    queued = queued_jobs.queued_tenants(session, up_to=limit)
    if not queued:
        return []
    weights = tenant_service.share_weights(session, tenant_ids=list(queued))
    claimed: dict[uuid.UUID, list[uuid.UUID]] = {tenant_id: [] for tenant_id in queued}
    while True:
        left = limit - sum(len(ids) for ids in claimed.values())
        open_ = {t: n - len(claimed[t]) for t, n in queued.items() if n > len(claimed[t])}
        if left <= 0 or not open_:
            break
        progress = False
        for tenant_id, quota in fair_quotas(open_, weights, left).items():
            if quota <= 0:
                continue
            fresh = queued_jobs.lock_queued_of(
                session, tenant_id=tenant_id, limit=quota, besides=claimed[tenant_id]
            )
            claimed[tenant_id].extend(fresh)
            progress = progress or bool(fresh)
            if len(fresh) < quota:  # the rest is locked by another process, or gone
                queued[tenant_id] = len(claimed[tenant_id])
        if not progress:
            break
    return interleave(claimed, weights)


def ingest_next(
    session: Session,
    *,
    limit: int,
    catalog: Catalog,
    embedder: Callable[[], Embedder] | None = None,
) -> int:
    """Ingest up to ``limit`` queued jobs of any tenants, a fair share of them
    (``claim_fairly``). Returns the jobs handled; 0 when there is nothing left to claim."""
    job_ids = claim_fairly(session, limit=limit)
    if not job_ids:
        return 0
    return ingest(session, job_ids=job_ids, catalog=catalog, embedder=embedder)
