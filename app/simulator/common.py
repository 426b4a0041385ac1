"""What every part of the simulator shares: its settings, its error type, deterministic dice."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from app.simulator.wire import AnthropicErrorBody, OpenAIErrorBody

# Published for the OpenAI Batch API: a 24 h completion window.
COMPLETION_WINDOW_SECONDS = 24 * 60 * 60

FLEX_UNAVAILABLE_MESSAGE = (
    "Resource unavailable: the flex tier has no capacity for this request right now "
    "(simulated). Retry later or use the default service tier."
)
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
LINE_ERROR_MESSAGE = (
    "The simulator rejected this request (per-request error rate {rate}): "
    "simulated invalid_request_error."
)


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """Timings, failure injection and randomness of the simulator.

    Batches: ``validating_seconds``, ``processing_seconds`` and ``finalizing_seconds`` are how
    long a batch stays ``validating``, ``in_progress`` and ``finalizing``; ``cancelling_seconds``
    how long a cancelled one stays ``cancelling``. A batch that would not finish within
    ``expire_after_seconds`` (default: the 24 h window) expires then, and its unfinished lines
    come back as ``batch_expired`` (OpenAI) or ``expired`` (Anthropic).

    Failures: ``error_rate`` is the share of requests answered with a 400 error (batch lines
    in the error file / ``errored`` results, realtime calls as a 400), chosen by a hash of the
    request so the same request always gets the same answer; ``rate_limit_rate`` and
    ``server_error_rate`` are the shares of API calls answered 429 (with ``retry-after:
    retry_after_seconds``) or 500; ``latency_seconds`` delays every API call.

    Flex (``service_tier: "flex"`` chat calls): ``flex_latency_seconds`` delays each one on
    top of ``latency_seconds``, and ``flex_unavailable_rate`` is the share answered 429 with
    OpenAI's ``resource_unavailable`` error (drawn per call: a retry may get through).

    ``seed`` fixes the output line order and the dice. IDs are random, as a real provider's
    are: a restarted simulator must never hand out an ID twice.
    """

    validating_seconds: float = 0.5
    processing_seconds: float = 2.0
    seed: int = 0
    cancelling_seconds: float = 0.5
    finalizing_seconds: float = 0.0
    expire_after_seconds: float | None = None
    latency_seconds: float = 0.0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    server_error_rate: float = 0.0
    retry_after_seconds: float = 1.0
    lose_create_rate: float = 0.0
    expire_rate: float = 0.0
    embedding_dimensions: int = 256
    flex_latency_seconds: float = 0.0
    flex_unavailable_rate: float = 0.0
    # The models that offer flex (OpenAI serves flex on some models only and answers the
    # others 400 invalid_request_error); None: every model.
    flex_models: tuple[str, ...] | None = None
    # Per-request refusals, as a provider answers them (``refusal``): models it no longer
    # serves (404 model_not_found), prompts containing ``refuse_marker`` (400
    # content_policy_violation; Anthropic answers them with ``stop_reason: "refusal"``) and
    # per-model context windows (400 context_length_exceeded for a prompt of more tokens, at
    # four characters a token).
    removed_models: tuple[str, ...] = ()
    refuse_marker: str | None = None
    context_limits: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "validating_seconds",
            "processing_seconds",
            "cancelling_seconds",
            "finalizing_seconds",
            "latency_seconds",
            "retry_after_seconds",
            "flex_latency_seconds",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in (
            "error_rate",
            "rate_limit_rate",
            "server_error_rate",
            "lose_create_rate",
            "expire_rate",
            "flex_unavailable_rate",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.expire_after_seconds is not None and self.expire_after_seconds <= 0:
            raise ValueError("expire_after_seconds must be positive")
        if self.embedding_dimensions <= 0:
            raise ValueError("embedding_dimensions must be positive")

    @property
    def expiry_seconds(self) -> float:
        if self.expire_after_seconds is None:
            return COMPLETION_WINDOW_SECONDS
        return self.expire_after_seconds


class APIError(Exception):
    """An error rendered as the provider's JSON error body with the given HTTP status.

    Under ``/v1/messages`` it renders in Anthropic's shape, elsewhere in OpenAI's.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type
        self.headers = headers or {}

    def body(self) -> OpenAIErrorBody:
        """Return the JSON body OpenAI would send for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def anthropic_body(self) -> AnthropicErrorBody:
        """Return the JSON body Anthropic would send for this error."""
        return {
            "type": "error",
            "error": {"type": anthropic_error_type(self.status_code), "message": self.message},
        }


def anthropic_error_type(status_code: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status_code, "api_error" if status_code >= 500 else "invalid_request_error")


def roll(seed: int, kind: str, key: str) -> float:
    """A deterministic number in [0, 1) for ``key``: the same request gets the same fate."""
    digest = hashlib.sha256(f"{seed}:{kind}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def refusal(settings: SimulatorSettings, model: str, messages: object) -> APIError | None:
    """The error the provider answers this request with (``removed_models``,
    ``refuse_marker``, ``context_limits``), or None."""
    if model in settings.removed_models:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return APIError(404, message, code="model_not_found")
    if not settings.refuse_marker and not settings.context_limits:
        return None  # nothing to read the messages for (every request of a batch asks)
    text = "".join(
        str(m.get("content") or "") if isinstance(m, dict) else str(m)
        for m in (messages if isinstance(messages, list) else [])
    )
    if settings.refuse_marker and settings.refuse_marker in text:
        message = "Your request was rejected as a result of our safety system (simulated)."
        return APIError(400, message, code="content_policy_violation")
    limit = dict(settings.context_limits).get(model)
    if limit is not None and len(text) // 4 > limit:
        message = (
            f"This model's maximum context length is {limit} tokens. However, your messages "
            f"resulted in {len(text) // 4} tokens."
        )
        return APIError(400, message, param="messages", code="context_length_exceeded")
    return None


def request_fails(settings: SimulatorSettings, key: str) -> bool:
    """Whether the per-request error rate picks this request (by ``key``) to fail."""
    return settings.error_rate > 0 and roll(settings.seed, "error", key) < settings.error_rate
