"""Provider simulator: an HTTP server speaking the OpenAI and Anthropic APIs Thrifty uses.

OpenAI: Files, Batches, chat completions and embeddings (this module and ``chat.py``);
Anthropic: Messages and Message Batches (``anthropic.py``). It lets Thrifty's pipeline run
end to end in development, tests and demos without an account, and it is faithful enough for
the official ``openai`` and ``anthropic`` SDKs. Batches move through ``validating`` ->
``in_progress`` -> (``finalizing``) -> ``completed`` on a timer, or to ``expired`` when they
would outlast ``expire_after_seconds``; every request is answered by the deterministic
extractive summariser, so the same input always produces the same output text and token usage.
Failures (per-request errors, 429s, 5xx, latency) are injected as ``SimulatorSettings`` and
``faults.py`` describe.

State lives in memory and is guarded by one ``threading.Lock``: endpoints are synchronous,
so uvicorn runs them concurrently in its threadpool.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.simulator import anthropic, chat, faults
from app.simulator.common import (
    EXPIRED_MESSAGE,
    LINE_ERROR_MESSAGE,
    APIError,
    SimulatorSettings,
    request_fails,
)
from app.simulator.summarise import count_prompt_tokens, count_tokens, simulate_completion

__all__ = ["APIError", "SimulatorSettings", "add_arguments", "create_app", "main", "serve",
           "settings_from_args"]  # fmt: skip

CHAT_COMPLETIONS_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
# Limits published for the OpenAI Batch API; enforcing them keeps the simulator honest.
_MAX_FILE_BYTES = 200 * 1024 * 1024
_MAX_REQUESTS_PER_BATCH = 50_000
_MAX_METADATA_PAIRS = 16
_MAX_METADATA_KEY_CHARS = 64
_MAX_METADATA_VALUE_CHARS = 512
# A broken file can fail on every line; reporting the first hundred is plenty to fix it.
_MAX_REPORTED_ERRORS = 100
_TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "expired"})
_MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


class CreateBatchRequest(BaseModel):
    """Body of ``POST /v1/batches``."""

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


@dataclass(slots=True)
class _StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass(frozen=True, slots=True)
class _BatchRequest:
    custom_id: str
    body: dict[str, Any]


@dataclass(slots=True)
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created_wall: float
    created_monotonic: float
    expiry_seconds: float
    requests: list[_BatchRequest]
    validation_errors: list[dict[str, Any]]
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    expired_at: int | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    cancel_requested_monotonic: float | None = None
    completed_before_cancel: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )

    def wall(self, offset_seconds: float) -> int:
        """Unix timestamp of a moment ``offset_seconds`` after creation."""
        return int(self.created_wall + offset_seconds)

    def to_json(self) -> dict[str, Any]:
        errors = (
            {"object": "list", "data": list(self.validation_errors)}
            if self.status == "failed"
            else None
        )
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created_wall),
            "in_progress_at": self.in_progress_at,
            "expires_at": self.wall(self.expiry_seconds),
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": self.expired_at,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": dict(self.counts),
            "metadata": dict(self.metadata) if self.metadata is not None else None,
        }


def _line_error(
    code: str, message: str, line: int | None, param: str | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _validate_line(
    raw: str, line_no: int, endpoint: str, seen: set[str], models: set[str]
) -> tuple[_BatchRequest | None, dict[str, Any] | None]:
    """Check one JSONL line against the batch input format; return the request or an error."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, _line_error(
            "invalid_json_line", "This line is not parseable as valid JSON.", line_no
        )
    if not isinstance(record, dict):
        return None, _line_error(
            "invalid_json_line", "Each line must be a JSON object describing a request.", line_no
        )
    custom_id = record.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return None, _line_error(
            "missing_required_parameter",
            "Missing required parameter: 'custom_id' (a non-empty string).",
            line_no,
            "custom_id",
        )
    if custom_id in seen:
        return None, _line_error(
            "duplicate_custom_id",
            f"The custom_id '{custom_id}' is used more than once; it must be unique per batch.",
            line_no,
            "custom_id",
        )
    seen.add(custom_id)
    if record.get("method") != "POST":
        return None, _line_error(
            "invalid_method", "Only the 'POST' method is supported.", line_no, "method"
        )
    if record.get("url") != endpoint:
        return None, _line_error(
            "invalid_url",
            f"The url must be '{endpoint}', matching the endpoint of the batch.",
            line_no,
            "url",
        )
    body = record.get("body")
    if not isinstance(body, dict):
        return None, _line_error(
            "missing_required_parameter", "Missing required parameter: 'body'.", line_no, "body"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return None, _line_error(
            "missing_required_parameter",
            "Missing required parameter: 'body.model'.",
            line_no,
            "body.model",
        )
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
    ):
        return None, _line_error(
            "missing_required_parameter",
            "'body.messages' must be a non-empty list of objects with a 'role'.",
            line_no,
            "body.messages",
        )
    # OpenAI runs a batch against a single model and rejects files that mix them.
    if models and model not in models:
        return None, _line_error(
            "mismatched_model",
            f"The model '{model}' differs from the model of earlier requests in this file; "
            "a batch may only target one model.",
            line_no,
            "body.model",
        )
    models.add(model)
    return _BatchRequest(custom_id=custom_id, body=body), None


def _parse_batch_file(
    data: bytes, endpoint: str
) -> tuple[list[_BatchRequest], list[dict[str, Any]]]:
    """Parse and validate a batch input file; line numbers in errors are 1-based."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [_line_error("invalid_file_format", "The file is not valid UTF-8.", None)]
    requests: list[_BatchRequest] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        request, error = _validate_line(raw, line_no, endpoint, seen, models)
        if error is not None:
            if len(errors) < _MAX_REPORTED_ERRORS:
                errors.append(error)
        elif request is not None:
            requests.append(request)
    if not requests and not errors:
        errors.append(_line_error("empty_file", "The batch input file is empty.", None))
    if len(requests) > _MAX_REQUESTS_PER_BATCH:
        errors.append(
            _line_error(
                "too_many_requests",
                f"A batch may contain at most {_MAX_REQUESTS_PER_BATCH} requests.",
                None,
            )
        )
    return requests, errors


def _progress(seconds_processing: float, settings: SimulatorSettings) -> float:
    if settings.processing_seconds <= 0:
        return 1.0
    return max(0.0, min(1.0, seconds_processing / settings.processing_seconds))


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


class _Simulator:
    """In-memory store of files and batches plus the batch lifecycle rules."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.files: dict[str, _StoredFile] = {}
        self.batches: dict[str, _Batch] = {}
        self._ids = random.Random(secrets.randbits(128))

    def _hex(self, length: int) -> str:
        # Ids must be unique, not secret: a seeded PRNG is many times cheaper than urandom.
        return f"{self._ids.getrandbits(4 * length):0{length}x}"

    # Files -------------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, data: bytes) -> _StoredFile:
        with self.lock:
            stored = _StoredFile(
                id=f"file-{self._hex(24)}",
                filename=filename,
                purpose=purpose,
                data=data,
                created_at=int(time.time()),
            )
            self.files[stored.id] = stored
            return stored

    def get_file(self, file_id: str) -> _StoredFile:
        with self.lock:
            return self._file(file_id)

    def _file(self, file_id: str) -> _StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise APIError(404, f"No such File object: {file_id}", param="id")
        return stored

    def list_files(self, purpose: str | None) -> list[_StoredFile]:
        with self.lock:
            return [f for f in self.files.values() if purpose is None or f.purpose == purpose]

    def delete_file(self, file_id: str) -> None:
        with self.lock:
            self._file(file_id)
            del self.files[file_id]

    # Batches -----------------------------------------------------------------------------

    def create_batch(self, request: CreateBatchRequest) -> _Batch:
        with self.lock:
            input_file = self.files.get(request.input_file_id)
            if input_file is None:
                raise APIError(
                    404,
                    f"No such File object: {request.input_file_id}",
                    param="input_file_id",
                )
            if input_file.purpose != "batch":
                raise APIError(
                    400,
                    f"File {input_file.id} has purpose '{input_file.purpose}'; "
                    "a batch input file must have purpose 'batch'.",
                    param="input_file_id",
                )
            # Parsing up front keeps GET cheap; failures surface once validation "finishes".
            requests, errors = _parse_batch_file(input_file.data, request.endpoint)
            batch = _Batch(
                id=f"batch_{self._hex(32)}",
                input_file_id=input_file.id,
                endpoint=request.endpoint,
                completion_window=request.completion_window,
                metadata=dict(request.metadata) if request.metadata is not None else None,
                created_wall=time.time(),
                created_monotonic=time.monotonic(),
                expiry_seconds=self.settings.expiry_seconds,
                requests=requests,
                validation_errors=errors,
            )
            self.batches[batch.id] = batch
            return batch

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            batch = self._batch(batch_id)
            self._advance(batch, time.monotonic())
            return batch.to_json()

    def _batch(self, batch_id: str) -> _Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise APIError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def list_batches(self, limit: int, after: str | None) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            newest_first = list(reversed(self.batches.values()))
            start = 0
            if after is not None:
                ids = [batch.id for batch in newest_first]
                if after not in ids:
                    raise APIError(400, f"Unknown pagination cursor '{after}'.", param="after")
                start = ids.index(after) + 1
            page = newest_first[start : start + limit]
            for batch in page:
                self._advance(batch, now)
            data = [batch.to_json() for batch in page]
            return {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": start + limit < len(newest_first),
            }

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            batch = self._batch(batch_id)
            now = time.monotonic()
            self._advance(batch, now)
            if batch.status in {"cancelling", "cancelled"}:
                return batch.to_json()
            if batch.status in _TERMINAL_STATUSES:
                raise APIError(
                    400, f"Cannot cancel a batch with status '{batch.status}'.", param="batch_id"
                )
            batch.completed_before_cancel = batch.counts["completed"]
            batch.cancel_requested_monotonic = now
            batch.cancelling_at = int(time.time())
            batch.status = "cancelling"
            return batch.to_json()

    def _advance(self, batch: _Batch, now: float) -> None:
        """Move ``batch`` to the state implied by the time elapsed since it was created."""
        if batch.status in _TERMINAL_STATUSES:
            return
        settings = self.settings
        if batch.cancel_requested_monotonic is not None:
            cancelling_for = now - batch.cancel_requested_monotonic
            if cancelling_for >= settings.cancelling_seconds:
                cancel_offset = batch.cancel_requested_monotonic - batch.created_monotonic
                batch.cancelled_at = batch.wall(cancel_offset + settings.cancelling_seconds)
                done = batch.completed_before_cancel
                if done:
                    # What finished before the cancel is still delivered, as OpenAI does.
                    self._write_output(batch, done, batch.cancelled_at)
                batch.status = "cancelled"
            return
        elapsed = now - batch.created_monotonic
        validating = settings.validating_seconds
        if elapsed < validating:
            batch.status = "validating"
            return
        if batch.validation_errors:
            batch.failed_at = batch.wall(validating)
            batch.status = "failed"
            return
        total = len(batch.requests)
        batch.in_progress_at = batch.wall(validating)
        batch.counts["total"] = total
        processing_done = validating + settings.processing_seconds
        expiry = batch.expiry_seconds
        if elapsed >= expiry and processing_done > expiry:
            # The window ran out first: what was done is delivered, the rest is expired.
            done = min(total, math.floor(total * _progress(expiry - validating, settings)))
            batch.expired_at = batch.wall(expiry)
            self._write_output(batch, done, batch.expired_at, expire_rest=True)
            batch.status = "expired"
            return
        if elapsed < processing_done:
            progress = _progress(elapsed - validating, settings)
            batch.counts["completed"] = min(total, math.floor(total * progress))
            batch.status = "in_progress"
            return
        finalizing_at = batch.wall(processing_done)
        batch.finalizing_at = finalizing_at
        if elapsed < processing_done + settings.finalizing_seconds:
            batch.counts["completed"] = total
            batch.status = "finalizing"
            return
        # Output is produced lazily, on the first look after processing time has run out.
        completed_at = batch.wall(processing_done + settings.finalizing_seconds)
        self._write_output(batch, total, completed_at)
        batch.completed_at = completed_at
        batch.status = "completed"

    def _output_order(self, requests: Sequence[_BatchRequest]) -> list[_BatchRequest]:
        """Order requests by a seeded hash of custom_id: stable, but never the input order."""

        def key(request: _BatchRequest) -> str:
            digest = f"{self.settings.seed}:{request.custom_id}".encode()
            return hashlib.sha256(digest).hexdigest()

        ordered = sorted(requests, key=key)
        # Real OpenAI does not preserve order; a lucky hash must not let clients rely on it.
        if len(ordered) > 1 and ordered == list(requests):
            ordered = ordered[1:] + ordered[:1]
        return ordered

    def _write_output(
        self, batch: _Batch, count: int, created: int, *, expire_rest: bool = False
    ) -> None:
        """Answer the first ``count`` requests (in output order) and store the output file.

        Requests the error rate picks go to the error file as 400s; with ``expire_rest`` the
        requests after the first ``count`` go there too, as ``batch_expired``.
        """
        ordered = self._output_order(batch.requests)
        lines: list[str] = []
        errors: list[str] = []
        for request in ordered[:count]:
            if request_fails(self.settings, f"{batch.id}:{request.custom_id}"):
                errors.append(orjson.dumps(self._error_line(request)).decode())
            else:
                line = self._response_line(request, created)
                lines.append(orjson.dumps(line).decode())
        if expire_rest:
            for request in ordered[count:]:
                errors.append(orjson.dumps(self._expired_line(request)).decode())
        if lines:
            batch.output_file_id = self._store_output(batch, "output", lines, created)
        if errors:
            batch.error_file_id = self._store_output(batch, "error", errors, created)
        batch.counts["completed"] = len(lines)
        batch.counts["failed"] = len(errors)

    def _store_output(self, batch: _Batch, kind: str, lines: list[str], created: int) -> str:
        stored = _StoredFile(
            id=f"file-{self._hex(24)}",
            filename=f"{batch.id}_{kind}.jsonl",
            purpose="batch_output",
            data=("\n".join(lines) + "\n").encode("utf-8"),
            created_at=created,
        )
        self.files[stored.id] = stored
        return stored.id

    def _error_line(self, request: _BatchRequest) -> dict[str, Any]:
        return {
            "id": f"batch_req_{self._hex(32)}",
            "custom_id": request.custom_id,
            "response": {
                "status_code": 400,
                "request_id": f"req_{self._hex(32)}",
                "body": {
                    "error": {
                        "message": LINE_ERROR_MESSAGE.format(rate=self.settings.error_rate),
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            },
            "error": None,
        }

    def _expired_line(self, request: _BatchRequest) -> dict[str, Any]:
        return {
            "id": f"batch_req_{self._hex(32)}",
            "custom_id": request.custom_id,
            "response": None,
            "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE},
        }

    def _response_line(self, request: _BatchRequest, created: int) -> dict[str, Any]:
        body = request.body
        messages: list[dict[str, Any]] = body["messages"]
        model: str = body["model"]
        completion = simulate_completion(messages, model, _max_tokens(body))
        prompt_tokens = count_prompt_tokens(messages)
        completion_tokens = count_tokens(completion.content)
        return {
            "id": f"batch_req_{self._hex(32)}",
            "custom_id": request.custom_id,
            "response": {
                "status_code": 200,
                "request_id": f"req_{self._hex(32)}",
                "body": {
                    "id": f"chatcmpl-{self._hex(29)}",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": completion.content,
                                "refusal": None,
                            },
                            "logprobs": None,
                            "finish_reason": completion.finish_reason,
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                    "system_fingerprint": "fp_simulator",
                },
            },
            "error": None,
        }


def _require_auth(authorization: Annotated[str | None, Header()] = None) -> None:
    """Reject requests without ``Authorization: Bearer <key>``, as the real API does."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise APIError(401, _MISSING_KEY_MESSAGE)


def _validate_batch_request(request: CreateBatchRequest) -> None:
    if request.endpoint != CHAT_COMPLETIONS_ENDPOINT:
        raise APIError(
            400,
            f"Unsupported endpoint '{request.endpoint}'; the simulator supports only "
            f"'{CHAT_COMPLETIONS_ENDPOINT}'.",
            param="endpoint",
        )
    if request.completion_window != COMPLETION_WINDOW:
        raise APIError(
            400,
            f"Invalid completion_window '{request.completion_window}'; only "
            f"'{COMPLETION_WINDOW}' is supported.",
            param="completion_window",
        )
    metadata = request.metadata or {}
    if len(metadata) > _MAX_METADATA_PAIRS:
        raise APIError(
            400, f"metadata may hold at most {_MAX_METADATA_PAIRS} pairs.", param="metadata"
        )
    for key, value in metadata.items():
        if len(key) > _MAX_METADATA_KEY_CHARS or len(value) > _MAX_METADATA_VALUE_CHARS:
            raise APIError(
                400,
                f"metadata keys are limited to {_MAX_METADATA_KEY_CHARS} characters and values "
                f"to {_MAX_METADATA_VALUE_CHARS}.",
                param="metadata",
            )


def _install_error_handlers(app: FastAPI) -> None:
    """Render every error, including FastAPI's own, in the called provider's error format."""

    @app.exception_handler(APIError)
    def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return faults.json_error(request, exc)

    @app.exception_handler(RequestValidationError)
    def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ()) if part not in {"body", "query"}]
        param = ".".join(location) or None
        message = str(first.get("msg", "Invalid request."))
        error = APIError(400, f"{message} ({param})" if param else message, param=param)
        return faults.json_error(request, error)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code in {404, 405} and message in {"Not Found", "Method Not Allowed"}:
            # Routing misses read like OpenAI's, which names the method and path.
            message = f"Invalid URL ({request.method} {request.url.path})"
        error = APIError(exc.status_code, message, headers=dict(exc.headers or {}))
        return faults.json_error(request, error)


def create_app(settings: SimulatorSettings | None = None) -> FastAPI:
    """Build the simulator's FastAPI app with fresh, empty in-memory state."""
    settings = settings or SimulatorSettings()
    sim = _Simulator(settings)
    app = FastAPI(title="Thrifty provider simulator", version="1.0")
    _install_error_handlers(app)
    faults.install(app, faults.Faults(settings), faults.json_error)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_require_auth)])
    v1.include_router(chat.router(settings))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @v1.post("/files")
    def upload_file(
        file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]
    ) -> dict[str, Any]:
        if purpose != "batch":
            raise APIError(
                400,
                f"Invalid purpose '{purpose}'; the simulator accepts only 'batch'.",
                param="purpose",
            )
        # Read one byte past the limit so oversized uploads are detected without buffering them.
        data = file.file.read(_MAX_FILE_BYTES + 1)
        if len(data) > _MAX_FILE_BYTES:
            raise APIError(400, "File exceeds the 200 MB limit for batch input.", param="file")
        return sim.add_file(file.filename or "upload.jsonl", purpose, data).to_json()

    @v1.get("/files")
    def list_files(purpose: str | None = None) -> dict[str, Any]:
        data = [stored.to_json() for stored in sim.list_files(purpose)]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": False,
        }

    @v1.get("/files/{file_id}")
    def retrieve_file(file_id: str) -> dict[str, Any]:
        return sim.get_file(file_id).to_json()

    @v1.get("/files/{file_id}/content")
    def file_content(file_id: str) -> Response:
        return Response(sim.get_file(file_id).data, media_type="application/octet-stream")

    @v1.delete("/files/{file_id}")
    def delete_file(file_id: str) -> dict[str, Any]:
        sim.delete_file(file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    @v1.post("/batches")
    def create_batch(request: CreateBatchRequest) -> dict[str, Any]:
        _validate_batch_request(request)
        return sim.create_batch(request).to_json()

    @v1.get("/batches")
    def list_batches(
        limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None
    ) -> dict[str, Any]:
        return sim.list_batches(limit, after)

    @v1.get("/batches/{batch_id}")
    def retrieve_batch(batch_id: str) -> dict[str, Any]:
        return sim.get_batch(batch_id)

    @v1.post("/batches/{batch_id}/cancel")
    def cancel_batch(batch_id: str) -> dict[str, Any]:
        return sim.cancel_batch(batch_id)

    app.include_router(v1)
    app.include_router(anthropic.router(settings), prefix="/v1")
    return app


def serve(host: str, port: int, settings: SimulatorSettings) -> None:
    """Run the simulator with uvicorn until interrupted."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


# (flag, type, help) of every setting; each also reads THRIFTY_SIMULATOR_<FLAG> as its default,
# so `thrifty up` (which starts the simulator) can be configured from the environment.
_FLAGS: list[tuple[str, type, str]] = [
    ("validating_seconds", float, "how long a batch stays validating"),
    ("processing_seconds", float, "batch processing time"),
    ("finalizing_seconds", float, "how long a finished batch stays finalizing"),
    ("cancelling_seconds", float, "how long a cancelled batch stays cancelling"),
    ("expire_after_seconds", float, "unfinished batches expire this long after creation "
     "(default: the 24 h completion window)"),
    ("latency_seconds", float, "delay added to every API call"),
    ("error_rate", float, "share of requests (batch lines, realtime calls) answered 400"),
    ("rate_limit_rate", float, "share of API calls answered 429"),
    ("server_error_rate", float, "share of API calls answered 500"),
    ("retry_after_seconds", float, "retry-after sent with injected 429s"),
    ("embedding_dimensions", int, "embedding size when a request gives none"),
    ("seed", int, "seed for output order and injected failures"),
]  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    """The simulator's command-line flags, shared by ``thrifty simulator`` and ``-m``."""
    defaults = SimulatorSettings()
    parser.add_argument("--host", default=os.environ.get("THRIFTY_SIMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=default_port)
    for name, kind, help_text in _FLAGS:
        env = f"THRIFTY_SIMULATOR_{name.upper()}"
        default = os.environ.get(env)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=kind(default) if default else getattr(defaults, name),
            help=f"{help_text} (env {env})",
        )


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    return SimulatorSettings(
        validating_seconds=args.validating_seconds,
        processing_seconds=args.processing_seconds,
        finalizing_seconds=args.finalizing_seconds,
        cancelling_seconds=args.cancelling_seconds,
        expire_after_seconds=args.expire_after_seconds,
        latency_seconds=args.latency_seconds,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        server_error_rate=args.server_error_rate,
        retry_after_seconds=args.retry_after_seconds,
        embedding_dimensions=args.embedding_dimensions,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``python -m app.simulator.server --port 8001``."""
    parser = argparse.ArgumentParser(description="Run the provider simulator.")
    add_arguments(parser, default_port=8001)
    args = parser.parse_args(argv)
    serve(args.host, args.port, settings_from_args(args))


if __name__ == "__main__":
    main()
