"""The lines of OpenAI batch files: the input file checked line by line, output and error lines.

Input lines are validated as the Batch API documents them (``custom_id``, ``method``, ``url``,
``body`` with a model and messages, one model per file), with the same error codes; each
output line answers one request with the deterministic summariser.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

import orjson
from pydantic import BaseModel

from app.simulator.chat import completion_object
from app.simulator.common import EXPIRED_MESSAGE, LINE_ERROR_MESSAGE, APIError
from app.simulator.wire import JSONObject, LineError, OutputLine

CHAT_COMPLETIONS_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
# Limits published for the OpenAI Batch API; enforcing them keeps the simulator honest.
MAX_FILE_BYTES = 200 * 1024 * 1024
_MAX_REQUESTS_PER_BATCH = 50_000
_MAX_METADATA_PAIRS = 16
_MAX_METADATA_KEY_CHARS = 64
_MAX_METADATA_VALUE_CHARS = 512
# A broken file can fail on every line; reporting the first hundred is plenty to fix it.
_MAX_REPORTED_ERRORS = 100


class CreateBatchRequest(BaseModel):
    """Body of ``POST /v1/batches``."""

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One valid line of an input file: what its output line is computed from."""

    custom_id: str
    model: str
    messages: list[JSONObject]
    max_tokens: int | None
    prompt_cache_key: str | None = None


class HexIds:
    """Random hex ids. They must be unique, not secret: a PRNG seeded once from ``secrets``
    is many times cheaper than urandom per id, and a restarted simulator still never repeats
    one."""

    def __init__(self) -> None:
        self._rng = random.Random(secrets.randbits(128))

    def __call__(self, length: int) -> str:
        return f"{self._rng.getrandbits(4 * length):0{length}x}"


def check_create_request(request: CreateBatchRequest) -> None:
    """Reject what ``POST /v1/batches`` rejects before looking at the input file."""
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


def _line_error(code: str, message: str, line: int | None, param: str | None = None) -> LineError:
    return {"code": code, "message": message, "param": param, "line": line}


def _max_tokens(body: JSONObject) -> int | None:
    # In a batch line an unusable limit is ignored rather than failing the whole file.
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _validate_line(
    raw: str, line_no: int, endpoint: str, seen: set[str], models: set[str]
) -> BatchRequest | LineError:
    """Check one JSONL line against the batch input format; return the request or an error."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _line_error(
            "invalid_json_line", "This line is not parseable as valid JSON.", line_no
        )
    if not isinstance(record, dict):
        return _line_error(
            "invalid_json_line", "Each line must be a JSON object describing a request.", line_no
        )
    custom_id = record.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return _line_error(
            "missing_required_parameter",
            "Missing required parameter: 'custom_id' (a non-empty string).",
            line_no,
            "custom_id",
        )
    if custom_id in seen:
        return _line_error(
            "duplicate_custom_id",
            f"The custom_id '{custom_id}' is used more than once; it must be unique per batch.",
            line_no,
            "custom_id",
        )
    seen.add(custom_id)
    if record.get("method") != "POST":
        return _line_error(
            "invalid_method", "Only the 'POST' method is supported.", line_no, "method"
        )
    if record.get("url") != endpoint:
        return _line_error(
            "invalid_url",
            f"The url must be '{endpoint}', matching the endpoint of the batch.",
            line_no,
            "url",
        )
    body = record.get("body")
    if not isinstance(body, dict):
        return _line_error(
            "missing_required_parameter", "Missing required parameter: 'body'.", line_no, "body"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _line_error(
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
        return _line_error(
            "missing_required_parameter",
            "'body.messages' must be a non-empty list of objects with a 'role'.",
            line_no,
            "body.messages",
        )
    # OpenAI runs a batch against a single model and rejects files that mix them.
    if models and model not in models:
        return _line_error(
            "mismatched_model",
            f"The model '{model}' differs from the model of earlier requests in this file; "
            "a batch may only target one model.",
            line_no,
            "body.model",
        )
    models.add(model)
    key = body.get("prompt_cache_key")
    return BatchRequest(
        custom_id, model, messages, _max_tokens(body), key if isinstance(key, str) else None
    )


def parse_batch_file(data: bytes, endpoint: str) -> tuple[list[BatchRequest], list[LineError]]:
    """Parse and validate a batch input file; line numbers in errors are 1-based."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [_line_error("invalid_file_format", "The file is not valid UTF-8.", None)]
    requests: list[BatchRequest] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    models: set[str] = set()
    for line_no, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        checked = _validate_line(raw, line_no, endpoint, seen, models)
        if isinstance(checked, BatchRequest):
            requests.append(checked)
        elif len(errors) < _MAX_REPORTED_ERRORS:
            errors.append(checked)
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


def response_line(request: BatchRequest, created: int, hex_id: HexIds) -> OutputLine:
    """The output-file line answering ``request``."""
    line_id, request_id = f"batch_req_{hex_id(32)}", f"req_{hex_id(32)}"
    body = completion_object(
        f"chatcmpl-{hex_id(29)}",
        created,
        request.model,
        request.messages,
        request.max_tokens,
        prompt_cache_key=request.prompt_cache_key,
    )
    return {
        "id": line_id,
        "custom_id": request.custom_id,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }


def error_line(request: BatchRequest, error_rate: float, hex_id: HexIds) -> OutputLine:
    """The error-file line of a request the error rate picked: a 400, as OpenAI reports it."""
    return {
        "id": f"batch_req_{hex_id(32)}",
        "custom_id": request.custom_id,
        "response": {
            "status_code": 400,
            "request_id": f"req_{hex_id(32)}",
            "body": {
                "error": {
                    "message": LINE_ERROR_MESSAGE.format(rate=error_rate),
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        },
        "error": None,
    }


def refused_line(request: BatchRequest, error: APIError, hex_id: HexIds) -> OutputLine:
    """The error-file line of a request the provider refused (``common.refusal``)."""
    return {
        "id": f"batch_req_{hex_id(32)}",
        "custom_id": request.custom_id,
        "response": {
            "status_code": error.status_code,
            "request_id": f"req_{hex_id(32)}",
            "body": error.body(),
        },
        "error": None,
    }


def expired_line(request: BatchRequest, hex_id: HexIds) -> OutputLine:
    """The error-file line of a request the completion window ran out on."""
    return {
        "id": f"batch_req_{hex_id(32)}",
        "custom_id": request.custom_id,
        "response": None,
        "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE},
    }
