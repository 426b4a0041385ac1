"""Reading jobs and groups back, and cancelling them (submission: app/intake/endpoints)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from app.config import get_settings
from app.jobs import service as job_service
from app.jobs.schemas import GroupCancelled, GroupOut, JobOut, JobPage
from app.jobs.views import to_outs
from app.kit.db import session_scope
from app.kit.deps import SessionDep
from app.kit.errors import API_ERROR_CODES, error_responses
from app.kit.json_input import StrictJSONRoute
from app.models import TERMINAL_STATES
from app.tenants.deps import JobsRead, JobsWrite

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=StrictJSONRoute)

ERRORS = error_responses(*API_ERROR_CODES)


def _retry_after(response: Response, *, running: bool) -> None:
    """While work is still running, tell pollers when to ask again."""
    if running:
        response.headers["Retry-After"] = str(get_settings().poll_retry_after_seconds)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERRORS, summary="Get a job")
def get_job(job_id: uuid.UUID, tenant: JobsRead, session: SessionDep, response: Response) -> JobOut:
    """State, result, routed model, token usage, cost and timings of one job.

    `Retry-After` is set while the job has not ended."""
    job = job_service.get_job(session, tenant=tenant, job_id=job_id)
    _retry_after(response, running=job.state not in TERMINAL_STATES)
    return to_outs(session, [job])[0]


@router.delete("/jobs/{job_id}", response_model=JobOut, responses=ERRORS, summary="Cancel a job")
def cancel_job(job_id: uuid.UUID, tenant: JobsWrite, session: SessionDep) -> JobOut:
    """Cancel a job that has not ended: before submission it leaves its window; after
    submission its late result is ignored. 409 when the job already ended."""
    job = job_service.cancel_job(session, tenant=tenant, job_id=job_id)
    return to_outs(session, [job])[0]


@router.get("/groups/{group_id}", response_model=GroupOut, responses=ERRORS, summary="Get a group")
def get_group(
    group_id: uuid.UUID, tenant: JobsRead, session: SessionDep, response: Response
) -> GroupOut:
    """Progress of a bulk submission: jobs by state, usage and cost so far.

    `Retry-After` is set while some job has not ended."""
    group = job_service.get_group(session, tenant=tenant, group_id=group_id)
    _retry_after(response, running=not group.done)
    return group


@router.get(
    "/groups/{group_id}/results",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"content": {"application/x-ndjson": {}}}},
    summary="Stream a group's jobs as JSON lines",
)
def stream_group_results(
    group_id: uuid.UUID, tenant: JobsRead, session: SessionDep
) -> StreamingResponse:
    """Every job of a bulk submission, one `JobOut` JSON object a line, in job id order.

    Read from the database a page at a time, so any size streams in flat memory.
    `Retry-After` is set while some job has not ended."""
    group = job_service.get_group(session, tenant=tenant, group_id=group_id)

    def lines() -> Iterator[str]:
        with session_scope() as stream_session:
            yield from job_service.iter_group_results(stream_session, group_id=group.id)

    headers = {} if group.done else {"Retry-After": str(get_settings().poll_retry_after_seconds)}
    return StreamingResponse(lines(), media_type="application/x-ndjson", headers=headers)


@router.post(
    "/groups/{group_id}/cancel",
    response_model=GroupCancelled,
    responses=ERRORS,
    summary="Cancel a group's unfinished jobs",
)
def cancel_group(group_id: uuid.UUID, tenant: JobsWrite, session: SessionDep) -> GroupCancelled:
    """Every job of the group that has not ended becomes `cancelled`; finished jobs keep
    their results."""
    cancelled = job_service.cancel_group(session, tenant=tenant, group_id=group_id)
    return cancelled


@router.get(
    "/groups/{group_id}/jobs",
    response_model=JobPage,
    responses=ERRORS,
    summary="List a group's jobs",
)
def list_group_jobs(
    group_id: uuid.UUID,
    tenant: JobsRead,
    session: SessionDep,
    response: Response,
    after: Annotated[uuid.UUID | None, Query(description="Cursor from `next_after`.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobPage:
    """The jobs of a bulk submission with their results, a page at a time."""
    page = job_service.list_group_jobs(
        session, tenant=tenant, group_id=group_id, after=after, limit=limit
    )
    group = job_service.get_group(session, tenant=tenant, group_id=group_id)
    _retry_after(response, running=not group.done)
    return page
