"""Row factories with keyword-only arguments."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session

from app.models import Job, JobState, Tenant, utcnow


def make_job(
    session: Session,
    *,
    tenant: Tenant,
    prompt: str | None = None,
    document: str | None = None,
    instruction: str | None = None,
    state: JobState = JobState.queued,
    model: str | None = None,
    routed_ago: timedelta | None = None,
    updated_ago: timedelta = timedelta(0),
) -> Job:
    """A job row; ``state=waiting`` jobs get a route to ``model`` (default gpt-4o-mini)."""
    now = utcnow()
    if prompt is None and document is None:
        prompt = f"question {uuid.uuid4()}"
    job = Job(
        tenant_id=tenant.id,
        prompt=prompt,
        document=document,
        instruction=instruction if document is not None else None,
        state=state,
        job_metadata={},
        updated_at=now - updated_ago,
    )
    if state != JobState.queued:
        job.provider, job.model, job.mode = "openai", model or "gpt-4o-mini", "batch"
        job.routed_at = now - (routed_ago or timedelta(0))
    session.add(job)
    session.flush()
    return job
