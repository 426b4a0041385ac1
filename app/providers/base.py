"""The interface every batch provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from app.kit.prompts import ChatMessage, PromptPrefix

# A provider batch's status, with OpenAI's names (as openai-python types ``Batch.status``);
# other providers' adapters map their own statuses onto these.
ProviderBatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]


@dataclass(frozen=True)
class BatchRequest:
    """One job's request to a model, as a batch or realtime call carries it."""

    custom_id: str
    messages: list[ChatMessage]
    max_tokens: int | None
    temperature: float | None = None
    # The prompt prefix this request shares with others of its batch, long enough for the
    # provider to cache: OpenAI gets its key as ``prompt_cache_key``, Anthropic a
    # ``cache_control`` breakpoint at its end. None: nothing to mark.
    prefix: PromptPrefix | None = None


@dataclass(frozen=True)
class BatchHandle:
    """What the provider gave back when it accepted a batch."""

    external_id: str
    # The uploaded requests file (OpenAI); None where the requests travel inline (Anthropic).
    input_file_id: str | None
    status: ProviderBatchStatus


@dataclass(frozen=True)
class BatchStatus:
    """A provider batch as the provider last reported it."""

    external_id: str
    status: ProviderBatchStatus
    # True once the provider will not change the batch any more.
    ended: bool
    # Where the results are: OpenAI's output file, or Anthropic's results URL.
    output_file_id: str | None
    # OpenAI's file of per-request errors; Anthropic reports those in its results.
    error_file_id: str | None
    # Why the batch as a whole failed or expired, in the provider's words.
    error: str | None


@dataclass(frozen=True)
class BatchResult:
    """One request's outcome, matched back to its job by ``custom_id``."""

    custom_id: str
    content: str | None
    input_tokens: int
    output_tokens: int
    error: str | None
    # Optional detail for a failed request: the provider's error code (``batch_expired``,
    # ``rate_limit_exceeded``, ``invalid_request_error`` ...) and whether sending the same
    # request again may succeed (expired, cancelled, rate-limited or 5xx: yes; a 4xx: no).
    error_code: str | None = None
    retryable: bool = False
    # Of ``input_tokens`` (every input token), those the provider read from its prompt cache
    # (OpenAI ``prompt_tokens_details.cached_tokens``, Anthropic ``cache_read_input_tokens``)
    # and those it wrote to it (Anthropic ``cache_creation_input_tokens``).
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0


# Provider error codes of a request this model will not take, whatever the attempt: the job
# goes down its model's fallback chain (app/batching/fallbacks.py) unless its model is pinned.
FALLBACK_CODES: dict[str, str] = {
    "model_not_found": "the provider no longer serves {model}",  # OpenAI, a 404
    "not_found_error": "the provider no longer serves {model}",  # Anthropic
    "content_policy_violation": "{model} refused the request",
    "content_filter": "{model} refused the request",
    "refusal": "{model} refused the request",  # Anthropic: a message with stop_reason refusal
    "context_length_exceeded": "the prompt is too long for {model}",
}


@dataclass(frozen=True)
class ProviderLimits:
    """The most one provider batch may hold; the collector caps windows to fit."""

    max_requests: int
    max_bytes: int


class ProviderError(Exception):
    """The provider refused or failed a call after retries.

    ``retryable`` is False when the provider rejected the request itself (a 4xx other than
    429): sending it again would fail the same way.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        # The provider's error code from the body (``model_not_found``), when it gave one.
        self.code = code


class BatchProvider(Protocol):
    # Per-batch limits (requests and bytes of the encoded batch); ``submit`` refuses more.
    limits: ProviderLimits

    def find_batch(
        self, *, reference: str, custom_ids: frozenset[str], since: datetime
    ) -> BatchHandle | None:
        """A live batch an earlier attempt created for ``reference`` (our batch id) holding
        the requests ``custom_ids``, created after ``since``, if any. Called before every
        create that an earlier attempt may have reached: a batch is never created twice.
        Raises a retryable ``ProviderError`` when a candidate cannot be ruled out yet."""
        ...

    def submit(self, *, reference: str, model: str, requests: list[BatchRequest]) -> BatchHandle:
        """Send the requests as one new batch, tagged with ``reference`` where the provider
        keeps metadata."""
        ...

    def retrieve(self, external_id: str) -> BatchStatus:
        """The batch's current status."""
        ...

    def results(self, status: BatchStatus) -> list[BatchResult]:
        """Every request's outcome the batch reports (results and per-request errors), in no
        particular order: match them to jobs by ``custom_id``."""
        ...

    def cancel(self, external_id: str) -> BatchStatus:
        """Ask the provider to stop the batch; what finished before still has results."""
        ...

    def request_bytes(self, *, model: str, request: BatchRequest) -> int:
        """Bytes one request adds to a batch, to split windows under ``limits.max_bytes``."""
        ...

    def close(self) -> None: ...


class RealtimeProvider(Protocol):
    """An OpenAI-compatible chat endpoint called request by request (vLLM, Ollama, ...).

    Used by the ``realtime`` mode: a flushed window's requests go out concurrently, at most
    ``concurrency`` at a time, and come back as the same ``BatchResult`` records a batch gives.
    """

    def complete_many(
        self, *, model: str, requests: list[BatchRequest], concurrency: int
    ) -> list[BatchResult]:
        """Every request's outcome; a per-request failure is a result with ``error`` set."""
        ...

    def close(self) -> None: ...


def split_requests(
    provider: BatchProvider, *, model: str, requests: list[BatchRequest]
) -> list[list[BatchRequest]]:
    """Cut ``requests`` into consecutive chunks that each fit the provider's limits.

    A single request larger than ``max_bytes`` still gets a chunk of its own; the provider
    will refuse it, and that refusal is recorded on its job.
    """
    limits = provider.limits
    chunks: list[list[BatchRequest]] = []
    current: list[BatchRequest] = []
    size = 0
    for request in requests:
        cost = provider.request_bytes(model=model, request=request)
        if current and (len(current) >= limits.max_requests or size + cost > limits.max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(request)
        size += cost
    if current:
        chunks.append(current)
    return chunks
