"""How work enters: ``POST /v1/jobs`` (one job or a list), read and validated here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import TypeAdapter, ValidationError

from app.catalog.deps import CatalogDep
from app.config import get_settings
from app.intake import submit as intake_submit
from app.jobs.schemas import JobIn, SubmitResponse
from app.kit.deps import SessionDep
from app.kit.errors import API_ERROR_CODES, ValidationFailed, error_responses
from app.kit.json_input import StrictJSONRoute, read_json
from app.kit.ratelimit import RateLimiterDep
from app.tenants.deps import JobsWrite

router = APIRouter(prefix="/v1", tags=["jobs"], route_class=StrictJSONRoute)

ERRORS = error_responses(*API_ERROR_CODES)

_job_list = TypeAdapter(list[JobIn])


class Submission:
    def __init__(self, jobs: list[JobIn], *, as_group: bool) -> None:
        self.jobs = jobs
        self.as_group = as_group


def _describe(error: ValidationError, *, is_list: bool) -> ValidationFailed:
    details = []
    for item in error.errors(include_url=False, include_input=False):
        loc = list(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
        details.append({"loc": loc, "message": message, "type": item["type"]})
    first = details[0]
    field = [str(part) for part in first["loc"]]
    if is_list and field:
        field[0] = f"jobs[{field[0]}]"
    # The field named (`deadline: ...`, `jobs[3].prompt: ...`) unless the message already
    # is about the whole job.
    where = ".".join(field) + ": " if field and first["type"] != "extra_forbidden" else ""
    if is_list and field and first["type"] == "extra_forbidden":
        where = field[0] + ": "
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ValidationFailed(f"{where}{first['message']}{more}", details=details)


async def read_submission(request: Request) -> Submission:
    """Read and validate the body, all or nothing: its size is limited as it streams
    (413), it is parsed strictly (``app/kit/json_input.py``), then each job validated."""
    settings = get_settings()
    data = await read_json(request)
    if isinstance(data, dict):
        try:
            return Submission([JobIn.model_validate(data)], as_group=False)
        except ValidationError as exc:
            raise _describe(exc, is_list=False) from exc
    if isinstance(data, list):
        if not data:
            raise ValidationFailed("the list of jobs is empty")
        if len(data) > settings.max_jobs_per_request:
            raise ValidationFailed(
                f"{len(data)} jobs in one request; the limit is {settings.max_jobs_per_request}"
            )
        try:
            return Submission(_job_list.validate_python(data), as_group=True)
        except ValidationError as exc:
            raise _describe(exc, is_list=True) from exc
    raise ValidationFailed("the body must be a job object or a list of job objects")


_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/JobIn"},
                        {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/JobIn"},
                            "minItems": 1,
                            "maxItems": 10_000,
                        },
                    ]
                }
            }
        },
    }
}


@router.post(
    "/jobs",
    status_code=202,
    response_model=SubmitResponse,
    responses=ERRORS,
    openapi_extra=_SUBMIT_BODY,
    summary="Submit one job or a list of up to 10,000",
)
def submit_jobs(
    tenant: JobsWrite,
    session: SessionDep,
    catalog: CatalogDep,
    limiter: RateLimiterDep,
    submission: Annotated[Submission, Depends(read_submission)],
) -> SubmitResponse:
    """Accept jobs for processing. A list becomes a group whose progress can be polled.

    The whole submission is stored in one transaction before the response; processing
    starts after it commits. Each job counts against the tenant's jobs-per-minute limit,
    and its unfinished jobs are capped (429 past either).
    """
    jobs_per_minute = tenant.jobs_per_minute or get_settings().tenant_jobs_per_minute
    limiter.hit("jobs", str(tenant.id), per_minute=jobs_per_minute, cost=len(submission.jobs))
    return intake_submit.submit(
        session,
        tenant=tenant,
        items=submission.jobs,
        as_group=submission.as_group,
        catalog=catalog,
    )
