"""A batch's output and error files, in OpenAI's format, and chat completion objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import orjson
from sqlalchemy.orm import Session

from app.frontdoor import files, repository
from app.frontdoor.schemas import ChatCompletion, ChatMessageOut, Choice, CompletionUsage
from app.jobs import service as jobs_service
from app.jobs.schemas import JobOut
from app.models import JobState, OpenAIBatch, OpenAIBatchLine, Tenant

PAGE = 1000


def completion(job: JobOut) -> ChatCompletion:
    """A completed job as a ``chat.completion`` object, with Thrifty's outcome beside it."""
    usage = job.usage
    prompt, answer = usage.input_tokens or 0, usage.output_tokens or 0
    return ChatCompletion(
        id=f"chatcmpl-{job.id.hex}",
        created=files.epoch(job.timings.completed_at) or 0,
        model=job.model or "",
        choices=[Choice(message=ChatMessageOut(content=job.result))],
        usage=CompletionUsage(
            prompt_tokens=prompt, completion_tokens=answer, total_tokens=prompt + answer
        ),
        thrifty={
            "job_id": str(job.id),
            "cache_hit": job.cache_hit,
            "route_reason": job.route_reason,
            "cost_usd": str(job.cost.cost_usd) if job.cost.cost_usd is not None else None,
            "naive_cost_usd": (
                str(job.cost.naive_cost_usd) if job.cost.naive_cost_usd is not None else None
            ),
        },
    )


def chunks(job: JobOut, *, include_usage: bool) -> list[bytes]:
    """A completed job as OpenAI's ``chat.completion.chunk`` server-sent events: the role,
    the answer (the job is complete, so in one piece), the finish, the usage if asked, and
    ``[DONE]``."""
    whole = completion(job)
    base = {
        "id": whole.id,
        "object": "chat.completion.chunk",
        "created": whole.created,
        "model": whole.model,
        "system_fingerprint": None,
    }

    def choice(delta: dict[str, str], finish: str | None) -> dict[str, object]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events: list[dict[str, object]] = [
        {**base, "choices": [choice({"role": "assistant", "content": ""}, None)]},
        {**base, "choices": [choice({"content": job.result or ""}, None)]},
        {**base, "choices": [choice({}, "stop")]},
    ]
    if include_usage:
        events.append(
            {**base, "choices": [], "usage": whole.usage.model_dump(), "thrifty": whole.thrifty}
        )
    return [b"data: " + orjson.dumps(event) + b"\n\n" for event in events] + [b"data: [DONE]\n\n"]


def _request_id(line: OpenAIBatchLine) -> str:
    return (line.job_id or uuid.uuid5(line.batch_id, str(line.line))).hex


def _refused(line: OpenAIBatchLine) -> bytes:
    """A line refused before it became a job: a 400 as OpenAI answers an invalid request."""
    error = {
        "message": line.error_message,
        "type": "invalid_request_error",
        "param": line.error_param,
        "code": line.error_code,
    }
    response = {"status_code": 400, "request_id": _request_id(line), "body": {"error": error}}
    return _line(line, response=response, error=None)


def _line(line: OpenAIBatchLine, *, response: object, error: object) -> bytes:
    body = {
        "id": f"batch_req_{_request_id(line)}",
        "custom_id": line.custom_id,
        "response": response,
        "error": error,
    }
    return orjson.dumps(body) + b"\n"


def _ended(line: OpenAIBatchLine, job: JobOut | None, *, expired: bool) -> tuple[bool, bytes]:
    """(succeeded, the output or error line) of a line whose job has ended."""
    if job is not None and job.state == JobState.completed:
        response = {
            "status_code": 200,
            "request_id": _request_id(line),
            "body": completion(job).model_dump(mode="json"),
        }
        return True, _line(line, response=response, error=None)
    if job is None or job.state == JobState.cancelled:
        code, message = (
            (
                "batch_expired",
                "This request could not be executed before the completion window expired.",
            )
            if expired
            else ("batch_cancelled", "This request was cancelled with its batch.")
        )
        return False, _line(line, response=None, error={"code": code, "message": message})
    return False, _line(
        line, response=None, error={"code": "request_failed", "message": job.error or "failed"}
    )


@dataclass
class Written:
    output_file_id: uuid.UUID | None
    error_file_id: uuid.UUID | None
    completed: int
    failed: int


def write_files(session: Session, *, tenant: Tenant, batch: OpenAIBatch) -> Written:
    """Write the batch's output file (succeeded requests) and error file (refused, failed,
    cancelled or expired ones), in input order, a page of lines at a time."""
    stem = f"batch_{batch.id.hex}"
    out = files.FileWriter(
        session, tenant_id=tenant.id, purpose=files.BATCH_OUTPUT, filename=f"{stem}_output.jsonl"
    )
    err = files.FileWriter(
        session, tenant_id=tenant.id, purpose=files.BATCH_OUTPUT, filename=f"{stem}_error.jsonl"
    )
    completed = failed = 0
    after = 0
    expired = batch.expired_at is not None
    while page := repository.lines(session, batch_id=batch.id, after=after, limit=PAGE):
        jobs = jobs_service.outcomes(
            session,
            tenant=tenant,
            job_ids=[line.job_id for line in page if line.job_id],
            release=True,
        )
        for line in page:
            if line.job_id is None:
                failed += 1
                err.write(_refused(line))
                continue
            ok, data = _ended(line, jobs.get(line.job_id), expired=expired)
            completed += ok
            failed += not ok
            (out if ok else err).write(data)
        after = page[-1].line
        for line in page:
            session.expunge(line)  # flat memory over 50,000 lines
    written = [out.close(), err.close()]
    ids = [row.id if row.bytes else None for row in written]
    for row, keep in zip(written, ids, strict=True):
        if keep is None:
            repository.delete_file(session, file_id=row.id)
    return Written(ids[0], ids[1], completed, failed)
