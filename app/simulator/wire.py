"""The JSON shapes the simulator sends, as the providers document them.

Named after the SDK types where one exists (``openai.types``, ``anthropic.types``);
``tests/simulator/test_sdks.py`` and ``scripts/check_simulator_sdks.py`` check that the
official SDKs parse them. Routes return these plain dicts with ``response_model=None``, so
FastAPI sends them exactly as built (no second validation, no reordering of keys).

What clients send is parsed JSON of unknown shape: it stays ``JSONObject`` until the endpoint
has checked it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, Literal, NotRequired, Required, TypedDict, TypeVar

T = TypeVar("T")

# A JSON object a client sent, before it is checked.
JSONObject = Mapping[str, object]


# Errors -------------------------------------------------------------------------------------


class OpenAIError(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(TypedDict):
    error: OpenAIError


class AnthropicError(TypedDict):
    type: str
    message: str


class AnthropicErrorBody(TypedDict):
    type: Literal["error"]
    error: AnthropicError


# OpenAI: lists, files, batches ----------------------------------------------------------------


class ListPage(TypedDict, Generic[T]):
    """A page of an OpenAI list (the SDK's ``SyncCursorPage``)."""

    object: Literal["list"]
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileObject(TypedDict):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"]


class FileDeleted(TypedDict):
    id: str
    object: Literal["file"]
    deleted: bool


# As ``openai.types.Batch.status``.
BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
    "cancelled",
]  # fmt: skip


class LineError(TypedDict):
    """Why a batch failed validation (``BatchError``); ``line`` is 1-based, None for the file
    as a whole."""

    code: str
    message: str
    param: str | None
    line: int | None


class BatchErrors(TypedDict):
    object: Literal["list"]
    data: list[LineError]


class BatchRequestCounts(TypedDict):
    total: int
    completed: int
    failed: int


class BatchObject(TypedDict):
    """``openai.types.Batch``."""

    id: str
    object: Literal["batch"]
    endpoint: str
    errors: BatchErrors | None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None


# OpenAI: chat completions and embeddings ------------------------------------------------------


class ChatCompletionMessage(TypedDict):
    role: Literal["assistant"]
    content: str
    refusal: None


class Choice(TypedDict):
    index: int
    message: ChatCompletionMessage
    logprobs: None
    finish_reason: str


class PromptTokensDetails(TypedDict):
    cached_tokens: int


class CompletionUsage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # Of prompt_tokens, those read from the (simulated) prompt cache.
    prompt_tokens_details: NotRequired[PromptTokensDetails]


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str
    # The tier that served it: "flex" for a flex request, else "default".
    service_tier: NotRequired[str]


class Embedding(TypedDict):
    object: Literal["embedding"]
    index: int
    # A list of floats, or with ``encoding_format: base64`` their little-endian float32 bytes.
    embedding: list[float] | str


class EmbeddingUsage(TypedDict):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(TypedDict):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# OpenAI: lines of a batch's output and error files --------------------------------------------


class OutputLineResponse(TypedDict):
    status_code: int
    request_id: str
    body: ChatCompletion | OpenAIErrorBody


class OutputLineError(TypedDict):
    code: str
    message: str


class OutputLine(TypedDict):
    """One line of a batch's output or error file."""

    id: str
    custom_id: str
    response: OutputLineResponse | None
    error: OutputLineError | None


# Anthropic: messages and message batches ------------------------------------------------------


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str


class CacheCreation(TypedDict):
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int


class MessageUsage(TypedDict):
    # Input tokens after the last cache breakpoint; read and written ones are counted apart.
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: NotRequired[int]
    cache_read_input_tokens: NotRequired[int]
    cache_creation: NotRequired[CacheCreation]


class Message(TypedDict):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[TextBlock]
    stop_reason: Literal["end_turn", "max_tokens", "refusal"]
    stop_sequence: None
    usage: MessageUsage


MessageBatchStatus = Literal["in_progress", "canceling", "ended"]


class MessageBatchRequestCounts(TypedDict):
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int


class MessageBatch(TypedDict):
    id: str
    type: Literal["message_batch"]
    processing_status: MessageBatchStatus
    request_counts: MessageBatchRequestCounts
    ended_at: str | None
    created_at: str
    expires_at: str
    archived_at: None
    cancel_initiated_at: str | None
    results_url: str | None


class MessageBatchList(TypedDict):
    data: list[MessageBatch]
    has_more: bool
    first_id: str | None
    last_id: str | None


class DeletedMessageBatch(TypedDict):
    id: str
    type: Literal["message_batch_deleted"]


class MessageBatchResult(TypedDict, total=False):
    """``succeeded`` carries ``message``, ``errored`` carries ``error``; the rest only a type."""

    type: Required[Literal["succeeded", "errored", "canceled", "expired"]]
    message: Message
    error: AnthropicErrorBody


class MessageBatchIndividualResponse(TypedDict):
    custom_id: str
    result: MessageBatchResult
