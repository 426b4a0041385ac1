"""The OpenAI-compatible API: ``/v1/files``, ``/v1/batches``, ``/v1/chat/completions``.

Point OpenAI's SDK at Thrifty (``base_url=http://host:port/v1``, a Thrifty key as
``api_key``). Writes need the ``jobs:write`` scope, reads ``jobs:read`` (or ``jobs:write``);
every object belongs to its tenant, and another tenant gets 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.catalog.deps import CatalogDep
from app.config import get_settings
from app.frontdoor import batches, chat, files, output, repository, translate
from app.frontdoor.schemas import (
    BatchIn,
    BatchList,
    BatchObject,
    FileDeleted,
    FileList,
    FileObject,
)
from app.kit.db import session_scope
from app.kit.deps import SessionDep
from app.kit.errors import API_ERROR_CODES, ValidationFailed, error_responses
from app.kit.json_input import MultipartRoute, StrictJSONRoute, read_json
from app.kit.ratelimit import RateLimiterDep
from app.models import RequestedMode
from app.tenants.deps import JobsRead, JobsWrite

router = APIRouter(prefix="/v1", tags=["openai"], route_class=StrictJSONRoute)
uploads = APIRouter(prefix="/v1", tags=["openai"], route_class=MultipartRoute)
UPLOAD_PATH = "/v1/files"

ERRORS = error_responses(*API_ERROR_CODES)
Limit = Annotated[int, Query(ge=1, le=100)]

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "enum": [files.BATCH]},
                    },
                }
            }
        },
    }
}


@uploads.post(
    "/files",
    response_model=FileObject,
    responses=ERRORS,
    openapi_extra=_UPLOAD_BODY,
    summary="Upload a batch input file (JSONL, up to 200 MB)",
)
async def upload_file(request: Request, tenant: JobsWrite, session: SessionDep) -> FileObject:
    """Multipart `file` and `purpose=batch`, as OpenAI's Files API. The file streams to
    disk as it arrives and then to Postgres a MiB at a time."""
    # The key is checked: end that transaction rather than hold it open for the upload.
    session.commit()
    form = await request.form(max_files=1, max_fields=4)
    try:
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != files.BATCH:
            raise ValidationFailed(f"purpose must be {files.BATCH!r}, got {purpose!r}")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed("send the file in the multipart field `file`")
        row = await run_in_threadpool(
            files.store_upload,
            session,
            tenant=tenant,
            source=upload.file,
            filename=upload.filename or "upload.jsonl",
            purpose=files.BATCH,
        )
        return files.to_object(row)
    finally:
        await form.close()


@router.get("/files", response_model=FileList, responses=ERRORS, summary="List files")
def list_files(
    tenant: JobsRead,
    session: SessionDep,
    purpose: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    after: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> FileList:
    cursor = files.get(session, tenant=tenant, file_id=after) if after else None
    rows = repository.list_files(
        session,
        tenant_id=tenant.id,
        purpose=purpose,
        after=cursor,
        limit=limit + 1,
        newest_first=order == "desc",
    )
    data = [files.to_object(row) for row in rows[:limit]]
    return FileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(rows) > limit,
    )


@router.get("/files/{file_id}", response_model=FileObject, responses=ERRORS, summary="A file")
def get_file(file_id: str, tenant: JobsRead, session: SessionDep) -> FileObject:
    return files.to_object(files.get(session, tenant=tenant, file_id=file_id))


@router.get(
    "/files/{file_id}/content",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    summary="A file's bytes",
)
def get_file_content(file_id: str, tenant: JobsRead, session: SessionDep) -> StreamingResponse:
    row = files.get(session, tenant=tenant, file_id=file_id)

    def parts() -> Iterator[bytes]:
        with session_scope() as stream_session:
            yield from files.iter_parts(stream_session, file_id=row.id)

    headers = {"Content-Length": str(row.bytes)}
    return StreamingResponse(parts(), media_type="application/octet-stream", headers=headers)


@router.delete(
    "/files/{file_id}", response_model=FileDeleted, responses=ERRORS, summary="Delete a file"
)
def delete_file(file_id: str, tenant: JobsWrite, session: SessionDep) -> FileDeleted:
    row = files.get(session, tenant=tenant, file_id=file_id)
    repository.delete_file(session, file_id=row.id)
    return FileDeleted(id=files.public_id(row.id))


@router.post("/batches", response_model=BatchObject, responses=ERRORS, summary="Create a batch")
def create_batch(
    body: BatchIn, tenant: JobsWrite, session: SessionDep, limiter: RateLimiterDep
) -> BatchObject:
    """Each line of the input file becomes a job of one group, through the normal intake
    (cache, routing, windows); a line that cannot is refused alone, in the error file.
    Every line counts against the tenant's jobs-per-minute limit, as `POST /v1/jobs` does."""
    source = files.get(session, tenant=tenant, file_id=body.input_file_id)
    jobs_per_minute = tenant.jobs_per_minute or get_settings().tenant_jobs_per_minute
    limiter.hit("jobs", str(tenant.id), per_minute=jobs_per_minute, cost=source.lines)
    return batches.to_object(batches.create(session, tenant=tenant, body=body))


@router.get("/batches/{batch_id}", response_model=BatchObject, responses=ERRORS, summary="A batch")
def get_batch(batch_id: str, tenant: JobsRead, session: SessionDep) -> BatchObject:
    return batches.to_object(batches.get(session, tenant=tenant, batch_id=batch_id))


@router.get("/batches", response_model=BatchList, responses=ERRORS, summary="List batches")
def list_batches(
    tenant: JobsRead, session: SessionDep, limit: Limit = 20, after: str | None = None
) -> BatchList:
    rows, more = batches.list_page(session, tenant=tenant, after=after, limit=limit)
    data = [batches.to_object(row) for row in rows]
    return BatchList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=BatchObject,
    responses=ERRORS,
    summary="Cancel a batch",
)
def cancel_batch(batch_id: str, tenant: JobsWrite, session: SessionDep) -> BatchObject:
    return batches.to_object(batches.cancel(session, tenant=tenant, batch_id=batch_id))


def _refusal(error: translate.LineError) -> ValidationFailed:
    return ValidationFailed(
        error.message,
        details=[
            {"loc": ["body", error.param or ""], "message": error.message, "type": error.code}
        ],
    )


@router.post(
    "/chat/completions",
    response_class=JSONResponse,
    responses={
        **ERRORS,
        200: {"content": {"application/json": {}, "text/event-stream": {}}},
        502: {},
        504: {},
    },
    summary="A chat completion through cache, router and realtime mode",
)
async def chat_completions(
    request: Request, tenant: JobsWrite, session: SessionDep, catalog: CatalogDep
) -> Response:
    """OpenAI's request and response; `x-thrifty-cache` (`hit` / `miss`), `x-thrifty-model`
    and `x-thrifty-cost-usd` headers tell what Thrifty did. With `stream: true` the answer
    comes as `chat.completion.chunk` server-sent events once the job has ended (its usage
    in a last chunk with `stream_options: {"include_usage": true}`)."""
    body = await read_json(request)
    job = translate.to_job(
        body, catalog=catalog, tenant=tenant.name, mode=RequestedMode.realtime, streaming=True
    )
    streamed = translate.stream_options(body) if isinstance(body, dict) else (False, False)
    if isinstance(job, translate.LineError):
        raise _refusal(job)
    if isinstance(streamed, translate.LineError):
        raise _refusal(streamed)
    # The key is checked: end that transaction (and free its connection) before waiting.
    session.commit()
    out = await chat.answer(tenant, job, catalog)
    headers = {
        "x-thrifty-cache": "hit" if out.cache_hit else "miss",
        "x-thrifty-model": out.model or "",
        "x-thrifty-cost-usd": format(out.cost.cost_usd or 0, "f"),
        "x-thrifty-job-id": str(out.id),
    }
    stream, include_usage = streamed
    if stream:
        events = output.chunks(out, include_usage=include_usage)
        return StreamingResponse(iter(events), media_type="text/event-stream", headers=headers)
    return JSONResponse(output.completion(out).model_dump(mode="json"), headers=headers)
