"""The OpenAI wire format, apart from transport: what we send and how we read the answers.

Pure functions between our values (``BatchRequest``, ``BatchHandle``, ``BatchStatus``,
``BatchResult``) and the JSON of the Files + Batches, Chat Completions and Embeddings APIs,
which the TypedDicts below describe (the fields we read or write, not every field). The
adapters (``openai_batch``, ``openai_realtime``, ``openai_embeddings``) only move the bytes.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

import orjson

from app.kit.prompts import ChatMessage
from app.providers.base import (
    FALLBACK_CODES,
    BatchHandle,
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderBatchStatus,
    ProviderError,
)

ENDPOINT = "/v1/chat/completions"
ENDED: frozenset[ProviderBatchStatus] = frozenset({"completed", "failed", "expired", "cancelled"})
# A batch in one of these will never produce results, so its window may be sent again.
DEAD: frozenset[ProviderBatchStatus] = frozenset({"failed", "expired", "cancelled", "cancelling"})
# Per-line error codes worth sending again in a new batch.
RETRYABLE_CODES = frozenset({"batch_expired", "batch_cancelled", "rate_limit_exceeded"})
# Where our batch id travels in a batch's metadata, so ``find_batch`` can recognise it.
REFERENCE_KEY = "thrifty_batch_id"


# --- requests ------------------------------------------------------------------------------


class ChatCompletionBody(TypedDict):
    model: str
    messages: list[ChatMessage]
    max_tokens: NotRequired[int]
    temperature: NotRequired[float]
    # Requests sharing a prompt prefix carry its hash, so OpenAI routes them to the machine
    # that holds it in its prompt cache (caching itself is automatic from 1024 tokens).
    prompt_cache_key: NotRequired[str]
    # "flex": OpenAI's flex tier (batch prices, slower, may answer 429 resource unavailable).
    service_tier: NotRequired[str]


class BatchLine(TypedDict):
    """One line of a batch's input file."""

    custom_id: str
    method: Literal["POST"]
    url: str
    body: ChatCompletionBody


class CreateBatchBody(TypedDict):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str]


class EmbeddingsBody(TypedDict):
    model: str
    input: list[str]
    encoding_format: Literal["float"]
    dimensions: NotRequired[int]


def auth_headers(api_key: str) -> dict[str, str]:
    """Bearer auth; none for a keyless server (a local vLLM or Ollama)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def chat_body(
    model: str, request: BatchRequest, *, service_tier: str | None = None
) -> ChatCompletionBody:
    """A Chat Completions request body; unset generation parameters are left out.

    The messages come in their order (system, earlier turns, then the user message, which
    opens with a document job's instruction), so a shared prefix is the start of every body
    that has it, byte for byte; ``prompt_cache_key`` is set only for a shared prefix.
    """
    body: ChatCompletionBody = {"model": model, "messages": request.messages}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.prefix is not None:
        body["prompt_cache_key"] = request.prefix.key
    if service_tier is not None:
        body["service_tier"] = service_tier
    return body


def batch_line(model: str, request: BatchRequest) -> bytes:
    """One JSONL line of a batch's input file, without its newline."""
    line: BatchLine = {
        "custom_id": request.custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": chat_body(model, request),
    }
    return orjson.dumps(line)


def batch_file(model: str, requests: list[BatchRequest]) -> bytes:
    """A batch's input file: one line per request."""
    return b"".join(batch_line(model, r) + b"\n" for r in requests)


def create_batch_body(
    *, input_file_id: str, completion_window: str, reference: str
) -> CreateBatchBody:
    return {
        "input_file_id": input_file_id,
        "endpoint": ENDPOINT,
        "completion_window": completion_window,
        "metadata": {REFERENCE_KEY: reference},
    }


def embeddings_body(model: str, texts: list[str], dimensions: int | None) -> EmbeddingsBody:
    body: EmbeddingsBody = {"model": model, "input": texts, "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


# --- responses -----------------------------------------------------------------------------


class FileObject(TypedDict):
    id: str


class BatchError(TypedDict, total=False):
    code: str | None
    line: int | None
    message: str | None


class BatchErrors(TypedDict, total=False):
    data: list[BatchError] | None


class Batch(TypedDict):
    id: str
    status: ProviderBatchStatus
    input_file_id: NotRequired[str | None]
    output_file_id: NotRequired[str | None]
    error_file_id: NotRequired[str | None]
    errors: NotRequired[BatchErrors | None]
    metadata: NotRequired[dict[str, str] | None]
    created_at: NotRequired[int]


class BatchPage(TypedDict, total=False):
    data: list[Batch]
    has_more: bool


class PromptTokensDetails(TypedDict, total=False):
    cached_tokens: int | None


class Usage(TypedDict, total=False):
    prompt_tokens: int
    completion_tokens: int
    # Of prompt_tokens, those served from OpenAI's prompt cache.
    prompt_tokens_details: PromptTokensDetails | None


class ChoiceMessage(TypedDict):
    content: str | None


class Choice(TypedDict):
    message: ChoiceMessage


class ErrorObject(TypedDict, total=False):
    code: str | None
    type: str | None
    message: str | None


class ResponseBody(TypedDict, total=False):
    """A chat completion, or an error body in its place."""

    choices: list[Choice]
    usage: Usage | None
    error: ErrorObject | None


class LineResponse(TypedDict, total=False):
    status_code: int
    body: ResponseBody | None


class ResultLine(TypedDict):
    """One line of a batch's output or error file."""

    custom_id: str
    response: NotRequired[LineResponse | None]
    error: NotRequired[ErrorObject | str | None]


class Embedding(TypedDict):
    index: int
    embedding: list[float]


class EmbeddingsResponse(TypedDict, total=False):
    data: list[Embedding]


def handle_of(batch: Batch, *, input_file_id: str | None) -> BatchHandle:
    return BatchHandle(batch["id"], input_file_id, batch["status"])


def live_batch(page: BatchPage, *, reference: str) -> BatchHandle | None:
    """The batch on ``page`` tagged with ``reference`` that may still produce results."""
    for batch in page.get("data", []):
        if (batch.get("metadata") or {}).get(REFERENCE_KEY) != reference:
            continue
        if batch["status"] in DEAD:
            continue
        return handle_of(batch, input_file_id=batch.get("input_file_id"))
    return None


def status_of(batch: Batch) -> BatchStatus:
    errors = (batch.get("errors") or {}).get("data") or []
    error = "; ".join(_describe_batch_error(e) for e in errors) or None
    if error is None and batch["status"] == "expired":
        error = "the batch expired before the completion window ended"
    return BatchStatus(
        external_id=batch["id"],
        status=batch["status"],
        ended=batch["status"] in ENDED,
        output_file_id=batch.get("output_file_id"),
        error_file_id=batch.get("error_file_id"),
        error=error,
    )


def _describe_batch_error(error: BatchError) -> str:
    line = f" (line {error['line']})" if error.get("line") else ""
    return f"{error.get('code') or 'error'}{line}: {error.get('message')}"


def parse_result_line(raw: str | bytes) -> BatchResult:
    """One output- or error-file line as a result: content and usage, or the error."""
    line: ResultLine = orjson.loads(raw)
    custom_id = line["custom_id"]
    response = line.get("response") or {}
    body = response.get("body") or {}
    if line.get("error") or response.get("status_code") != 200:
        error = line.get("error") or body.get("error") or {}
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            message = error.get("message")
        else:
            code, message = None, str(error)
        status_code = response.get("status_code")
        retryable = code in RETRYABLE_CODES or (
            isinstance(status_code, int) and (status_code == 429 or status_code >= 500)
        )
        text = message or f"HTTP {status_code}"
        if code == "batch_expired":
            text = f"batch_expired: {text}"
        return BatchResult(custom_id, None, 0, 0, text, error_code=code, retryable=retryable)
    usage = body.get("usage") or {}
    return BatchResult(
        custom_id,
        body["choices"][0]["message"]["content"],
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
        None,
        cached_input_tokens=cached_tokens(usage),
    )


def cached_tokens(usage: Usage) -> int:
    """The prompt tokens OpenAI read from its prompt cache (0 when it does not say)."""
    details = usage.get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or 0)


def completion_result(custom_id: str, completion: ResponseBody) -> BatchResult:
    """A realtime chat completion as a result.

    Raises ``KeyError``, ``IndexError`` or ``TypeError`` when it is not a chat completion.
    """
    content = completion["choices"][0]["message"]["content"]
    usage = completion.get("usage") or {}
    return BatchResult(
        custom_id,
        content if isinstance(content, str) else "",
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        None,
        cached_input_tokens=cached_tokens(usage),
    )


def failed_call_result(custom_id: str, exc: ProviderError) -> BatchResult:
    """A realtime call that failed after retries, as a result carrying why."""
    code = f"http_{exc.status_code}" if exc.status_code else "connection_error"
    if exc.code in FALLBACK_CODES:  # a refusal or a model not served: its own code
        code = exc.code
    return BatchResult(custom_id, None, 0, 0, str(exc), error_code=code, retryable=exc.retryable)


def embedding_vectors(response: EmbeddingsResponse, *, expected: int) -> list[list[float]]:
    """The vectors in input order; a short answer is a (retryable) provider error."""
    items = sorted(response.get("data", []), key=lambda item: item["index"])
    if len(items) != expected:
        raise ProviderError(
            f"POST embeddings: asked for {expected} vectors, got {len(items)}", retryable=True
        )
    return [[float(x) for x in item["embedding"]] for item in items]
