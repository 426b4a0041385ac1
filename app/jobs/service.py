"""Jobs: reading them back and cancelling them (submission and ingest live in app/intake)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from app.jobs import repository, transitions
from app.jobs.schemas import GroupCancelled, GroupOut, JobOut, JobPage
from app.jobs.views import group_out, to_outs
from app.kit.errors import Conflict, NotFound
from app.models import Job, Tenant, utcnow


def get_job(session: Session, *, tenant: Tenant, job_id: uuid.UUID) -> Job:
    """One of the tenant's jobs; ``NotFound`` when it has none with this id."""
    try:
        with session.begin_nested():
            job = repository.get(session, tenant_id=tenant.id, job_id=job_id)
    except DataError as exc:
        # A row Postgres stored but cannot give back (a poison job): fail it with the reason
        # and clear the unreadable value, so it can be read and cancelled like any other.
        transitions.quarantine(
            session, job_ids=[job_id], reason=f"unreadable job: {exc.orig}", at=utcnow()
        )
        job = repository.get(session, tenant_id=tenant.id, job_id=job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def outcomes(
    session: Session, *, tenant: Tenant, job_ids: list[uuid.UUID], release: bool = False
) -> dict[uuid.UUID, JobOut]:
    """The tenant's jobs among ``job_ids`` in their public shape, by id. ``release`` lets
    go of the rows read (a long scan, page by page, keeps flat memory)."""
    jobs = repository.get_many(session, tenant_id=tenant.id, ids=job_ids) if job_ids else []
    found = {out.id: out for out in to_outs(session, jobs)}
    if release:
        for job in jobs:
            session.expunge(job)
    return found


def get_group(session: Session, *, tenant: Tenant, group_id: uuid.UUID) -> GroupOut:
    """A bulk submission's progress by state, with its usage and cost so far."""
    group = repository.get_group(session, tenant_id=tenant.id, group_id=group_id)
    if group is None:
        raise NotFound(f"no group {group_id}")
    return group_out(session, group)


def list_group_jobs(
    session: Session, *, tenant: Tenant, group_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> JobPage:
    """A page of a group's jobs in id order, after the cursor ``after``."""
    group = repository.get_group(session, tenant_id=tenant.id, group_id=group_id)
    if group is None:
        raise NotFound(f"no group {group_id}")
    jobs = repository.list_group_jobs(session, group_id=group.id, after=after, limit=limit)
    next_after = jobs[-1].id if len(jobs) == limit else None
    return JobPage(data=to_outs(session, jobs), next_after=next_after)


def iter_group_results(session: Session, *, group_id: uuid.UUID, page: int = 500) -> Iterator[str]:
    """A group's jobs as JSON lines (one JobOut each), read a page at a time."""
    after: uuid.UUID | None = None
    while True:
        jobs = repository.list_group_jobs(session, group_id=group_id, after=after, limit=page)
        for out in to_outs(session, jobs):
            yield out.model_dump_json() + "\n"
        if len(jobs) < page:
            return
        after = jobs[-1].id
        session.expunge_all()  # keep memory flat on large groups


def cancel_job(session: Session, *, tenant: Tenant, job_id: uuid.UUID) -> Job:
    """Cancel one job that has not ended. Raises ``Conflict`` when it already has.

    Before submission the job simply leaves its window (or its not-yet-sent batch); after
    submission its late result is ignored, and the poller cancels the provider batch once
    every job in it is cancelled.
    """
    job = get_job(session, tenant=tenant, job_id=job_id)
    if not transitions.cancel_one(session, tenant_id=tenant.id, job_id=job.id, now=utcnow()):
        session.refresh(job)
        raise Conflict(f"job {job_id} already ended ({job.state.value}); nothing to cancel")
    session.refresh(job)
    return job


def cancel_group(session: Session, *, tenant: Tenant, group_id: uuid.UUID) -> GroupCancelled:
    """Cancel every job of the group that has not ended; finished jobs keep their results.

    A job already handed to the provider is cancelled here too: its result, if one still
    arrives, is not applied.
    """
    group = repository.get_group(session, tenant_id=tenant.id, group_id=group_id)
    if group is None:
        raise NotFound(f"no group {group_id}")
    cancelled = transitions.cancel_unfinished(session, group_id=group.id, now=utcnow())
    return GroupCancelled(
        cancelled=len(cancelled), group=get_group(session, tenant=tenant, group_id=group_id)
    )
