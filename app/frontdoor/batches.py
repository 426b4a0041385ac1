"""The Batch API: a batch's input lines become the jobs of one group, through the normal
intake (so the cache, routing, windows and coalescing apply); its status, counts and files
follow that group.

``create`` stores the batch ``validating`` and hands it to a worker (``start``), which reads
the file a line at a time: a line that is not a valid request is refused on its own (it goes
to the error file), the rest are submitted in parts into one group, and the batch is
``in_progress``. A file with no valid request at all fails, with OpenAI's ``errors``. Each
read of a batch advances it: once every job has ended, the output and error files are
written and the batch is ``completed`` (or ``cancelled``; ``expired`` past its window, its
unfinished jobs cancelled).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.catalog.catalog import Catalog
from app.config import get_settings
from app.frontdoor import files, output, repository, translate
from app.frontdoor.schemas import (
    BATCH_PREFIX,
    BatchError,
    BatchErrors,
    BatchIn,
    BatchObject,
    RequestCounts,
)
from app.intake import submit as intake_submit
from app.intake.placement import context_overflow
from app.jobs import service as jobs_service
from app.jobs import transitions
from app.jobs.schemas import JobIn
from app.kit import queue
from app.kit.errors import Conflict, NotFound, ThriftyError, ValidationFailed
from app.kit.json_input import parse_json
from app.models import JobState, OpenAIBatch, RequestedMode, Tenant, utcnow
from app.models import OpenAIBatchStatus as Status

ENDPOINTS = ("/v1/chat/completions",)
WINDOWS = {"24h": timedelta(hours=24)}
SUBMIT_CHUNK = 5000
# A batch still validating this long after it was made lost its message: send it again.
REDRIVE_AFTER = timedelta(seconds=30)
OPEN = (Status.in_progress, Status.cancelling, Status.finalizing)
MAX_ERRORS = 100


def public_id(batch_id: uuid.UUID) -> str:
    return f"{BATCH_PREFIX}{batch_id.hex}"


def parse_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(hex=value.removeprefix(BATCH_PREFIX))
    except ValueError as exc:
        raise NotFound(f"no batch {value}") from exc


def to_object(batch: OpenAIBatch) -> BatchObject:
    def file_id(value: uuid.UUID | None) -> str | None:
        return files.public_id(value) if value is not None else None

    return BatchObject(
        id=public_id(batch.id),
        endpoint=batch.endpoint,
        errors=BatchErrors(data=[BatchError(**e) for e in batch.errors]) if batch.errors else None,
        input_file_id=files.public_id(batch.input_file_id),
        completion_window=batch.completion_window,
        status=batch.status.value,
        output_file_id=file_id(batch.output_file_id),
        error_file_id=file_id(batch.error_file_id),
        created_at=files.epoch(batch.created_at) or 0,
        **{
            f"{name}_at": files.epoch(getattr(batch, f"{name}_at"))
            for name in (
                "in_progress",
                "expires",
                "finalizing",
                "completed",
                "failed",
                "expired",
                "cancelling",
                "cancelled",
            )
        },
        request_counts=RequestCounts(
            total=batch.total, completed=batch.completed_count, failed=batch.failed_count
        ),
        metadata=batch.batch_metadata,
    )


def create(session: Session, *, tenant: Tenant, body: BatchIn) -> OpenAIBatch:
    if body.endpoint not in ENDPOINTS:
        raise ValidationFailed(
            f"endpoint {body.endpoint!r} is not supported; use {', '.join(ENDPOINTS)}"
        )
    if body.completion_window not in WINDOWS:
        raise ValidationFailed(
            f"completion_window {body.completion_window!r} is not supported; use "
            + ", ".join(repr(w) for w in WINDOWS)
        )
    source = files.get(session, tenant=tenant, file_id=body.input_file_id)
    if source.purpose != files.BATCH:
        raise ValidationFailed(
            f"file {body.input_file_id} has purpose {source.purpose!r}, not 'batch'"
        )
    now = utcnow()
    batch = OpenAIBatch(
        id=uuid.uuid4(),
        tenant_id=tenant.id,
        status=Status.validating,
        endpoint=body.endpoint,
        completion_window=body.completion_window,
        batch_metadata=body.metadata,
        input_file_id=source.id,
        created_at=now,
        expires_at=now + WINDOWS[body.completion_window],
        rejected=0,
        total=0,
        completed_count=0,
        failed_count=0,
    )
    session.add(batch)
    session.flush()
    queue.enqueue(session, queue.START_OPENAI_BATCH, str(batch.id))
    return batch


def _fail(batch: OpenAIBatch, errors: list[dict[str, Any]]) -> None:
    batch.status, batch.failed_at, batch.errors = Status.failed, utcnow(), errors[:MAX_ERRORS]


def _check_line(
    raw: bytes, *, endpoint: str, seen: set[str], catalog: Catalog, tenant: Tenant
) -> tuple[str | None, JobIn | translate.LineError]:
    """A line's custom_id and its job, or why it is refused."""
    try:
        request = parse_json(raw)
    except ThriftyError as exc:
        return None, translate.LineError(
            "invalid_json", f"the line is not valid JSON: {exc.message}"
        )
    if not isinstance(request, dict):
        return None, translate.LineError("invalid_request", "the line must be a JSON object")
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, translate.LineError(
            "missing_custom_id", "`custom_id` must be a non-empty string", "custom_id"
        )
    if custom_id in seen:
        return custom_id, translate.LineError(
            "duplicate_custom_id",
            f"custom_id {custom_id!r} is used by an earlier line",
            "custom_id",
        )
    seen.add(custom_id)
    extra = sorted(set(request) - {"custom_id", "method", "url", "body"})
    if extra:
        return custom_id, translate.LineError(
            "unsupported_parameter", f"`{extra[0]}` is not a field of a batch line", extra[0]
        )
    if request.get("method") != "POST":
        return custom_id, translate.LineError("invalid_method", '`method` must be "POST"', "method")
    if request.get("url") != endpoint:
        return custom_id, translate.LineError(
            "invalid_url", f"`url` must be the batch's endpoint {endpoint}", "url"
        )
    job = translate.to_job(
        request.get("body"), catalog=catalog, tenant=tenant.name, mode=RequestedMode.auto
    )
    if isinstance(job, JobIn):
        overflow = context_overflow(job, model_hint=job.model, catalog=catalog)
        if overflow is not None:  # refused alone, as OpenAI refuses such a line
            return custom_id, translate.LineError("context_length_exceeded", overflow, "body")
    return custom_id, job


def start(session: Session, *, batch_id: uuid.UUID, catalog: Catalog) -> None:
    """Validate a batch's file and submit its requests (a worker's task; safe to repeat)."""
    batch = repository.lock_batch(session, batch_id=batch_id)
    if batch is None or batch.status != Status.validating:
        return
    tenant = repository.tenant(session, tenant_id=batch.tenant_id)
    source = repository.get_file(session, tenant_id=batch.tenant_id, file_id=batch.input_file_id)
    if tenant is None or source is None:
        _fail(batch, [{"code": "invalid_file", "message": "The input file was deleted."}])
        return
    limit = get_settings().max_batch_lines
    if source.lines > limit:
        _fail(
            batch,
            [
                {
                    "code": "too_many_requests",
                    "message": f"The file has {source.lines} lines; a batch takes up to {limit}.",
                }
            ],
        )
        return
    try:
        with session.begin_nested():
            counted = _submit_lines(session, batch=batch, tenant=tenant, catalog=catalog)
    except ThriftyError as exc:
        _fail(batch, [{"code": exc.type, "message": exc.message}])
        return
    if counted is not None:
        _fail(batch, counted)


def _submit_lines(
    session: Session, *, batch: OpenAIBatch, tenant: Tenant, catalog: Catalog
) -> list[dict[str, Any]] | None:
    """Submit the file's valid lines in parts into one group; returns the errors when no
    line is valid (the batch fails), else ``None``."""
    seen: set[str] = set()
    pending: list[tuple[int, str, JobIn]] = []
    errors: list[dict[str, Any]] = []
    group_id: uuid.UUID | None = None
    number = total = submitted = 0

    def flush() -> None:
        nonlocal group_id, submitted
        if not pending:
            return
        if group_id is None:
            group_id = transitions.create_group(session, tenant_id=tenant.id, size=0)
        answer = intake_submit.submit(
            session,
            tenant=tenant,
            items=[job for _, _, job in pending],
            as_group=False,
            catalog=catalog,
            group_id=group_id,
        )
        repository.add_lines(
            session,
            [
                {"batch_id": batch.id, "line": n, "custom_id": custom_id, "job_id": job.id}
                for (n, custom_id, _), job in zip(pending, answer.jobs, strict=True)
            ],
        )
        submitted += len(pending)
        pending.clear()

    for raw in files.iter_lines(session, file_id=batch.input_file_id):
        number += 1
        if not raw.strip():
            continue
        total += 1
        custom_id, job = _check_line(
            raw, endpoint=batch.endpoint, seen=seen, catalog=catalog, tenant=tenant
        )
        if isinstance(job, translate.LineError):
            errors.append(
                {"code": job.code, "message": job.message, "param": job.param, "line": number}
            )
            repository.add_lines(
                session,
                [
                    {
                        "batch_id": batch.id,
                        "line": number,
                        "custom_id": custom_id,
                        "job_id": None,
                        "error_code": job.code,
                        "error_message": job.message,
                        "error_param": job.param,
                    }
                ],
            )
            continue
        assert custom_id is not None
        pending.append((number, custom_id, job))
        if len(pending) >= SUBMIT_CHUNK:
            flush()
    flush()
    if total == 0:
        return [{"code": "empty_file", "message": "The input file has no requests."}]
    if group_id is None:
        return errors
    transitions.resize_group(session, group_id=group_id, size=submitted)
    now = utcnow()
    batch.group_id, batch.total, batch.rejected = group_id, total, len(errors)
    batch.failed_count = len(errors)
    batch.status, batch.in_progress_at = Status.in_progress, now
    return None


def refresh(session: Session, *, tenant: Tenant, batch: OpenAIBatch) -> OpenAIBatch:
    """Bring a batch up to date with its jobs: counts, expiry, and once they have all ended,
    its files and final status."""
    now = utcnow()
    if (
        batch.status == Status.validating
        and now - (batch.redriven_at or batch.created_at) > REDRIVE_AFTER
    ):
        batch.redriven_at = now
        queue.enqueue(session, queue.START_OPENAI_BATCH, str(batch.id))
    if batch.status not in OPEN or batch.group_id is None:
        return batch
    locked = repository.get_batch(session, tenant_id=tenant.id, batch_id=batch.id, lock=True)
    if locked is None or locked.status not in OPEN or locked.group_id is None:
        return locked or batch
    batch, group_id = locked, locked.group_id
    group = jobs_service.get_group(session, tenant=tenant, group_id=group_id)
    if not group.done and now >= batch.expires_at:
        jobs_service.cancel_group(session, tenant=tenant, group_id=group_id)
        batch.expired_at = now
        group = jobs_service.get_group(session, tenant=tenant, group_id=group_id)
    counts = group.counts
    batch.completed_count = counts.get(JobState.completed, 0)
    ended_badly = sum(counts.get(s, 0) for s in (JobState.failed, JobState.cancelled))
    batch.failed_count = batch.rejected + ended_badly
    if not group.done:
        return batch
    batch.finalizing_at = now
    written = output.write_files(session, tenant=tenant, batch=batch)
    batch.output_file_id, batch.error_file_id = written.output_file_id, written.error_file_id
    batch.completed_count, batch.failed_count = written.completed, written.failed
    if batch.expired_at is not None:
        batch.status = Status.expired
    elif batch.status == Status.cancelling:
        batch.status, batch.cancelled_at = Status.cancelled, now
    else:
        batch.status, batch.completed_at = Status.completed, now
    session.flush()
    return batch


def get(session: Session, *, tenant: Tenant, batch_id: str) -> OpenAIBatch:
    batch = repository.get_batch(session, tenant_id=tenant.id, batch_id=parse_id(batch_id))
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return refresh(session, tenant=tenant, batch=batch)


def list_page(
    session: Session, *, tenant: Tenant, after: str | None, limit: int
) -> tuple[list[OpenAIBatch], bool]:
    cursor = None
    if after is not None:
        cursor = repository.get_batch(session, tenant_id=tenant.id, batch_id=parse_id(after))
        if cursor is None:
            raise NotFound(f"no batch {after}")
    rows = repository.list_batches(session, tenant_id=tenant.id, after=cursor, limit=limit + 1)
    return [refresh(session, tenant=tenant, batch=b) for b in rows[:limit]], len(rows) > limit


def cancel(session: Session, *, tenant: Tenant, batch_id: str) -> OpenAIBatch:
    """Cancel the batch's unfinished requests; what has finished stays in its output file."""
    batch = repository.get_batch(
        session, tenant_id=tenant.id, batch_id=parse_id(batch_id), lock=True
    )
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    now = utcnow()
    if batch.status == Status.validating:
        batch.status, batch.cancelling_at, batch.cancelled_at = Status.cancelled, now, now
        return batch
    if batch.status not in (Status.in_progress, Status.cancelling):
        raise Conflict(f"batch {batch_id} is {batch.status.value}; it cannot be cancelled")
    batch.status, batch.cancelling_at = Status.cancelling, batch.cancelling_at or now
    assert batch.group_id is not None
    jobs_service.cancel_group(session, tenant=tenant, group_id=batch.group_id)
    return refresh(session, tenant=tenant, batch=batch)
