"""``POST /v1/chat/completions``: one job through cache → router → realtime, waited for.

The job is stored and handed to ingest like any other (an exact or semantic cache hit ends
it there, a miss is routed into its model's realtime window); the request then polls the
job's row, briefly at first, until it ends or ``THRIFTY_CHAT_TIMEOUT_SECONDS`` pass.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from starlette.concurrency import run_in_threadpool

from app.catalog.catalog import Catalog
from app.config import get_settings
from app.intake import submit as intake_submit
from app.jobs import service as jobs_service
from app.jobs.schemas import JobIn, JobOut
from app.kit.db import session_scope
from app.kit.errors import ThriftyError
from app.models import TERMINAL_STATES, Tenant

FIRST_WAIT, MAX_WAIT = 0.02, 0.25


class AnswerTimeout(ThriftyError):
    status_code = 504
    type = "timeout"


class JobFailed(ThriftyError):
    status_code = 502
    type = "job_failed"


def _submit(tenant: Tenant, job: JobIn, catalog: Catalog) -> uuid.UUID:
    with session_scope() as session:
        answer = intake_submit.submit(
            session, tenant=tenant, items=[job], as_group=False, catalog=catalog
        )
    return answer.jobs[0].id


def _read(tenant: Tenant, job_id: uuid.UUID) -> JobOut:
    with session_scope() as session:
        return jobs_service.outcomes(session, tenant=tenant, job_ids=[job_id])[job_id]


async def answer(tenant: Tenant, job: JobIn, catalog: Catalog) -> JobOut:
    """Submit ``job`` and wait for it to end; a failed or cancelled job is an error."""
    job_id = await run_in_threadpool(_submit, tenant, job, catalog)
    deadline = time.monotonic() + get_settings().chat_timeout_seconds
    wait = FIRST_WAIT
    while True:
        out = await run_in_threadpool(_read, tenant, job_id)
        if out.state in TERMINAL_STATES:
            break
        if time.monotonic() > deadline:
            raise AnswerTimeout(
                f"no answer within {get_settings().chat_timeout_seconds:g}s; the job goes on: "
                f"GET /v1/jobs/{job_id}"
            )
        await asyncio.sleep(wait)
        wait = min(MAX_WAIT, wait * 1.5)
    if out.state.value != "completed":
        raise JobFailed(f"job {job_id} {out.state.value}: {out.error}")
    return out
