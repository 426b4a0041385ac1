"""Queries on queued jobs for ingest's weighted fair share across tenants (every write is in
``transitions``): which tenants have queued jobs, and each one's oldest, locked."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from app.models import Job, JobState


def queued_tenants(session: Session, *, up_to: int) -> dict[uuid.UUID, int]:
    """The tenants with queued jobs and how many each has, counted up to ``up_to``.

    A loose scan of ``ix_jobs_queued_tenant``: one index probe per tenant (the next tenant id
    after the last), however many jobs a tenant has queued.
    """
    queued = Job.state == JobState.queued
    first = select(Job.tenant_id).where(queued).order_by(Job.tenant_id).limit(1)
    walk = first.cte("queued_tenants", recursive=True)
    after = (
        select(Job.tenant_id)
        .where(queued, Job.tenant_id > walk.c.tenant_id)
        .order_by(Job.tenant_id)
        .limit(1)
        .scalar_subquery()
    )
    walk = walk.union_all(select(after).where(walk.c.tenant_id.is_not(None)))
    # In the index's order, so that the planner walks the tenant's entries of the index (an
    # unordered LIMIT invites a sequential scan of the whole table).
    some = (
        select(Job.id)
        .where(queued, Job.tenant_id == walk.c.tenant_id)
        .order_by(Job.created_at)
        .limit(up_to)
        .lateral()
    )
    query = (
        select(walk.c.tenant_id, func.count(some.c.id))
        .select_from(walk.join(some, true()))
        .where(walk.c.tenant_id.is_not(None))
        .group_by(walk.c.tenant_id)
    )
    return {tenant_id: int(count) for tenant_id, count in session.execute(query)}


def lock_queued_of(
    session: Session, *, tenant_id: uuid.UUID, limit: int, besides: Sequence[uuid.UUID] = ()
) -> list[uuid.UUID]:
    """Lock up to ``limit`` more of a tenant's queued jobs (not among ``besides``, the ones
    already taken), oldest first; rows another worker holds are skipped, so concurrent ingest
    processes take disjoint jobs."""
    taken = [Job.id.not_in(besides)] if besides else []
    query = (
        select(Job.id)
        .where(Job.state == JobState.queued, Job.tenant_id == tenant_id, *taken)
        .order_by(Job.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))
