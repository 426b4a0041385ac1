"""The Anthropic Message Batches wire format, apart from transport.

Pure functions between our values and the JSON of ``/v1/messages/batches``, which the
TypedDicts below describe (the fields we read or write). ``anthropic_batch`` only moves it.

Statuses are mapped onto OpenAI's names (``ProviderBatchStatus``): ``processing_status``
``in_progress`` is ``in_progress``, ``canceling`` is ``cancelling``, and ``ended`` is
``cancelled`` if a cancel was asked for, ``expired`` if nothing ran before the window closed,
else ``completed`` (per-request errors and expiries then fail their own jobs).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Literal, NotRequired, TypedDict

from app.providers.base import BatchHandle, BatchRequest, BatchResult, BatchStatus
from app.providers.base import ProviderBatchStatus as Status

API_VERSION = "2023-06-01"
# The Messages API requires max_tokens; used when a job sets no output limit.
DEFAULT_MAX_TOKENS = 1024
RETRYABLE_ERRORS = frozenset({"api_error", "overloaded_error", "rate_limit_error"})


# --- requests ------------------------------------------------------------------------------


class CacheControl(TypedDict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"]


# A batch's requests run over minutes to hours: a 1-hour cache outlives the 5-minute default
# between the first request of a prefix and the rest (Anthropic advises it for batches).
# Its writes cost 2x the input price (the catalog's cache_write_per_mtok), reads 0.1x.
CACHE_TTL: Literal["5m", "1h"] = "1h"


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str
    cache_control: NotRequired[CacheControl]


class MessageParam(TypedDict):
    role: str
    content: str | list[TextBlock]


class MessageParams(TypedDict):
    """A Messages API request body."""

    model: str
    max_tokens: int
    messages: list[MessageParam]
    system: NotRequired[str | list[TextBlock]]
    temperature: NotRequired[float]


class BatchEntry(TypedDict):
    custom_id: str
    params: MessageParams


class CreateBatchBody(TypedDict):
    requests: list[BatchEntry]


def auth_headers(api_key: str, *, version: str = API_VERSION) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": version}


def message_params(
    *, model: str, request: BatchRequest, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> MessageParams:
    """A Messages API request body: system messages move to the ``system`` parameter.

    A request with a shared prefix (``request.prefix``) gets one ``cache_control``
    breakpoint (1-hour) on the block that ends it: the system prompt, the last earlier turn,
    or the instruction that opens the user message, which is then split into two text
    blocks. Everything before the breakpoint is the same bytes in every request that shares
    the prefix; nothing is marked on a request without one.
    """
    system = [m["content"] for m in request.messages if m["role"] == "system"]
    messages: list[MessageParam] = [
        {"role": m["role"], "content": m["content"]}
        for m in request.messages
        if m["role"] != "system"
    ]
    params: MessageParams = {
        "model": model,
        "max_tokens": request.max_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        params["system"] = "\n\n".join(system)
    if request.prefix is not None:
        _mark_prefix(params, instruction=request.prefix.instruction)
    if request.temperature is not None:
        params["temperature"] = request.temperature
    return params


def _block(text: str, *, cached: bool = False) -> TextBlock:
    block: TextBlock = {"type": "text", "text": text}
    if cached:
        block["cache_control"] = {"type": "ephemeral", "ttl": CACHE_TTL}
    return block


def _mark_prefix(params: MessageParams, *, instruction: str | None) -> None:
    """Put the cache breakpoint at the end of the prefix (see ``message_params``)."""
    messages = params["messages"]
    last = messages[-1]
    content = last["content"]
    if instruction is not None and isinstance(content, str) and content.startswith(instruction):
        rest = content[len(instruction) :]
        last["content"] = [_block(instruction, cached=True)] + ([_block(rest)] if rest else [])
    elif len(messages) > 1 and isinstance(turn := messages[-2]["content"], str):
        messages[-2]["content"] = [_block(turn, cached=True)]
    elif isinstance(system := params.get("system"), str):
        params["system"] = [_block(system, cached=True)]


# Anthropic batches carry no metadata: each request's ``custom_id`` carries a tag of the batch
# it was sent in (our batch id, hashed), so a batch an earlier attempt made for *this* batch
# (this window, this model) is told from an earlier batch of the same jobs, e.g. one of
# another model they fell back from. ``custom_id`` may be at most 64 of ``[a-zA-Z0-9_-]``.
TAG_LENGTH = 16
MAX_CUSTOM_ID = 64 - TAG_LENGTH - 1
_TAGGED = re.compile(rf"^(?P<id>.+)_[0-9a-f]{{{TAG_LENGTH}}}$")


def batch_tag(reference: str) -> str:
    """The tag of the batch ``reference`` (our batch id) on its requests' ``custom_id``s."""
    return hashlib.sha256(reference.encode()).hexdigest()[:TAG_LENGTH]


def tagged_id(custom_id: str, tag: str) -> str:
    return f"{custom_id}_{tag}"


def untagged_id(wire_id: str) -> str:
    """Our ``custom_id`` (the job id) from the one on the wire; an untagged one (a batch sent
    before tags existed) is itself."""
    match = _TAGGED.match(wire_id)
    return match.group("id") if match else wire_id


def batch_entry(
    model: str, request: BatchRequest, *, default_max_tokens: int, tag: str
) -> BatchEntry:
    params = message_params(model=model, request=request, default_max_tokens=default_max_tokens)
    return {"custom_id": tagged_id(request.custom_id, tag), "params": params}


def encode(body: BatchEntry | CreateBatchBody) -> bytes:
    """JSON as the batch is sent (UTF-8, not ASCII-escaped), so sizes are measured right."""
    return json.dumps(body, ensure_ascii=False).encode()


def create_batch_body(
    model: str, requests: list[BatchRequest], *, default_max_tokens: int, tag: str
) -> CreateBatchBody:
    return {
        "requests": [
            batch_entry(model, r, default_max_tokens=default_max_tokens, tag=tag) for r in requests
        ]
    }


# --- responses -----------------------------------------------------------------------------


class RequestCounts(TypedDict, total=False):
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int


class MessageBatch(TypedDict):
    id: str
    processing_status: Literal["in_progress", "canceling", "ended"]
    created_at: NotRequired[str]
    request_counts: NotRequired[RequestCounts | None]
    cancel_initiated_at: NotRequired[str | None]
    results_url: NotRequired[str | None]


class ContentBlock(TypedDict, total=False):
    type: str
    text: str


class Usage(TypedDict, total=False):
    # Input tokens after the last cache breakpoint; the cached ones are counted apart.
    input_tokens: int | None
    output_tokens: int | None
    cache_read_input_tokens: int | None
    cache_creation_input_tokens: int | None


class Message(TypedDict, total=False):
    content: list[ContentBlock] | None
    # "end_turn", "max_tokens", ...; "refusal" when Claude declined the request (Claude 4
    # models: the classifiers stopped it; usage is still billed, the text may be partial).
    stop_reason: str | None
    usage: Usage | None


class ErrorDetail(TypedDict, total=False):
    type: str | None
    message: str | None


class ErrorResponse(TypedDict, total=False):
    """``{"type": "error", "error": {...}}``; older results put the detail at the top."""

    type: str | None
    message: str | None
    error: ErrorDetail | None


class Result(TypedDict, total=False):
    type: Literal["succeeded", "errored", "canceled", "expired"]
    message: Message | None
    error: ErrorResponse | None


class ResultLine(TypedDict):
    """One line of a batch's results file."""

    custom_id: str
    result: NotRequired[Result | None]


def status_name(batch: MessageBatch) -> Status:
    """``processing_status`` as one of OpenAI's statuses (see the module docstring)."""
    processing = batch["processing_status"]
    if processing == "in_progress":
        return "in_progress"
    if processing == "canceling":
        return "cancelling"
    if batch.get("cancel_initiated_at"):
        return "cancelled"
    counts = batch.get("request_counts") or {}
    if counts.get("expired") and not (counts.get("succeeded") or counts.get("errored")):
        return "expired"
    return "completed"


class MessageBatchList(TypedDict, total=False):
    data: list[MessageBatch]
    has_more: bool
    last_id: str | None


def created_at(batch: MessageBatch) -> datetime | None:
    """When the provider says the batch was created (RFC 3339), if it says."""
    raw = batch.get("created_at")
    return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None


def request_total(batch: MessageBatch) -> int:
    """How many requests the batch holds, whatever state each is in."""
    counts: RequestCounts = batch.get("request_counts") or {}
    return (
        counts.get("processing", 0)
        + counts.get("succeeded", 0)
        + counts.get("errored", 0)
        + counts.get("canceled", 0)
        + counts.get("expired", 0)
    )


def handle_of(batch: MessageBatch) -> BatchHandle:
    return BatchHandle(batch["id"], None, status_name(batch))


def status_of(batch: MessageBatch) -> BatchStatus:
    name = status_name(batch)
    ended = batch["processing_status"] == "ended"
    error = None
    if name == "expired":
        error = "the batch expired before any request was processed"
    return BatchStatus(
        external_id=batch["id"],
        status=name,
        ended=ended,
        # The results file's location stands in for OpenAI's output file.
        output_file_id=batch.get("results_url") if ended else None,
        error_file_id=None,
        error=error,
    )


def result_wire_id(raw: str) -> str:
    """A results line's ``custom_id`` as sent, tag and all."""
    line: ResultLine = json.loads(raw)
    return line["custom_id"]


def parse_result_line(raw: str) -> BatchResult:
    """One results line as a result: text and usage, or why there is none."""
    line: ResultLine = json.loads(raw)
    custom_id = untagged_id(line["custom_id"])
    result = line.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        message = result.get("message") or {}
        text = "".join(
            block.get("text", "")
            for block in message.get("content") or []
            if block.get("type") == "text"
        )
        usage = message.get("usage") or {}
        read = int(usage.get("cache_read_input_tokens") or 0)
        written = int(usage.get("cache_creation_input_tokens") or 0)
        if message.get("stop_reason") == "refusal":
            # Not an answer: the job goes down its fallback chain (FALLBACK_CODES["refusal"]).
            why = "refusal: the model declined the request (stop_reason refusal)"
            return BatchResult(custom_id, None, 0, 0, why, error_code="refusal")
        return BatchResult(
            custom_id,
            text,
            # Every input token, as OpenAI counts them: uncached, read and written.
            int(usage.get("input_tokens") or 0) + read + written,
            int(usage.get("output_tokens") or 0),
            None,
            cached_input_tokens=read,
            cache_write_tokens=written,
        )
    if kind == "errored":
        outer = result.get("error") or {}
        nested = outer.get("error")
        inner: ErrorDetail | ErrorResponse = nested if isinstance(nested, dict) else outer
        code = inner.get("type") or "errored"
        message_text = inner.get("message") or "the request failed"
        return BatchResult(
            custom_id,
            None,
            0,
            0,
            message_text,
            error_code=code,
            retryable=code in RETRYABLE_ERRORS,
        )
    if kind == "canceled":
        reason = "canceled: the batch was cancelled before this request ran"
        return BatchResult(custom_id, None, 0, 0, reason, error_code="canceled", retryable=True)
    if kind == "expired":
        reason = "expired: the batch's 24 h window ended before this request ran"
        return BatchResult(custom_id, None, 0, 0, reason, error_code="expired", retryable=True)
    return BatchResult(custom_id, None, 0, 0, f"unknown result type {kind!r}")
