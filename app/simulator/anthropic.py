"""Anthropic's Messages and Message Batches API, as the simulator serves it.

``POST /v1/messages`` answers at once; ``/v1/messages/batches`` holds inline requests
(``custom_id`` + ``params``) that stay ``in_progress`` for the configured time, then
``ended`` with a JSONL results file whose ``result.type`` is ``succeeded``, ``errored``,
``canceled`` or ``expired``. Requests need ``x-api-key`` and ``anthropic-version`` headers;
errors use Anthropic's ``{"type": "error", "error": {...}}`` body.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response

from app.simulator.common import (
    APIError,
    SimulatorSettings,
    anthropic_error_type,
    refusal,
    request_fails,
)
from app.simulator.prompt_cache import PROMPT_CACHE
from app.simulator.summarise import count_prompt_tokens, count_tokens, simulate_completion
from app.simulator.wire import (
    DeletedMessageBatch,
    JSONObject,
    Message,
    MessageBatch,
    MessageBatchIndividualResponse,
    MessageBatchList,
    MessageBatchRequestCounts,
    MessageBatchResult,
    MessageBatchStatus,
)

MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024
_CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ROLES = {"user", "assistant"}


def _require_headers(
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
    anthropic_version: Annotated[str | None, Header()] = None,
) -> None:
    # The key comes as x-api-key, or (newer SDKs) as Authorization: Bearer.
    scheme, _, bearer = (authorization or "").partition(" ")
    if not (x_api_key or "").strip() and not (scheme.lower() == "bearer" and bearer.strip()):
        raise APIError(401, "x-api-key header is required")
    if not (anthropic_version or "").strip():
        raise APIError(400, "anthropic-version: header is required")


def _rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def _chat_messages(params: JSONObject) -> tuple[str, list[JSONObject], int]:
    """Validate Messages API params; return the model, OpenAI-style messages and max_tokens."""
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "model: Field required")
    max_tokens = params.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise APIError(400, "max_tokens: Field required (an integer >= 1)")
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "messages: at least one message is required")
    converted: list[JSONObject] = []
    system = params.get("system")
    if system is not None:
        if not isinstance(system, str | list):
            raise APIError(400, "system: Input should be a valid string or list of text blocks")
        converted.append({"role": "system", "content": system})
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise APIError(400, f"messages.{index}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, str | list):
            raise APIError(400, f"messages.{index}.content: Field required")
        converted.append({"role": message["role"], "content": content})
    if params.get("stream"):
        raise APIError(400, "stream: the simulator does not support streaming")
    return model, converted, max_tokens


# The refuse marker's code: OpenAI answers it with an error, Anthropic with a refusal message.
_MARKED = "content_policy_violation"


def create_message(params: JSONObject, *, refuse: bool = False) -> Message:
    """A Messages API ``message`` for valid ``params``; usage counted from the text, the
    prefix up to a ``cache_control`` breakpoint read from or written to the prompt cache.
    ``refuse``: Claude declines, as Claude 4 models answer a request their classifiers stop:
    a message with ``stop_reason: "refusal"``, the text cut short, the usage still billed."""
    model, messages, max_tokens = _chat_messages(params)
    completion = simulate_completion(messages, model, max_tokens)
    usage = PROMPT_CACHE.anthropic_usage(
        model=model, params=params, input_tokens=count_prompt_tokens(messages)
    )
    text = completion.content[:16] if refuse else completion.content
    usage["output_tokens"] = count_tokens(text)
    stop: Literal["end_turn", "max_tokens", "refusal"] = "refusal" if refuse else "end_turn"
    if not refuse and completion.finish_reason == "length":
        stop = "max_tokens"
    return {
        "id": f"msg_{secrets.token_hex(12)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def _error_result(message: str, kind: str = "invalid_request_error") -> MessageBatchResult:
    return {
        "type": "errored",
        "error": {"type": "error", "error": {"type": kind, "message": message}},
    }


@dataclass(frozen=True, slots=True)
class _InlineRequest:
    custom_id: str
    params: JSONObject


@dataclass(slots=True)
class _MessageBatch:
    id: str
    requests: list[_InlineRequest]
    created_wall: float
    created_monotonic: float
    expiry_seconds: float
    status: MessageBatchStatus = "in_progress"
    cancel_requested_monotonic: float | None = None
    cancel_initiated_at: float | None = None
    ended_at: float | None = None
    results: bytes = b""
    # Set when the batch ends; until then every request counts as processing.
    counts: MessageBatchRequestCounts | None = None

    def to_json(self, base_url: str) -> MessageBatch:
        counts = self.counts or {
            "processing": len(self.requests), "succeeded": 0, "errored": 0,
            "canceled": 0, "expired": 0,
        }  # fmt: skip
        ended = self.status == "ended"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": counts.copy(),
            "ended_at": _rfc3339(self.ended_at) if self.ended_at is not None else None,
            "created_at": _rfc3339(self.created_wall),
            "expires_at": _rfc3339(self.created_wall + self.expiry_seconds),
            "archived_at": None,
            "cancel_initiated_at": (
                _rfc3339(self.cancel_initiated_at) if self.cancel_initiated_at else None
            ),
            "results_url": (
                f"{base_url.rstrip('/')}/v1/messages/batches/{self.id}/results" if ended else None
            ),
        }


class _Batches:
    """In-memory message batches and their lifecycle, guarded by ``lock``."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.batches: dict[str, _MessageBatch] = {}

    def create(self, requests: list[_InlineRequest]) -> _MessageBatch:
        with self.lock:
            batch = _MessageBatch(
                id=f"msgbatch_{secrets.token_hex(12)}",
                requests=requests,
                created_wall=time.time(),
                created_monotonic=time.monotonic(),
                expiry_seconds=self.settings.expiry_seconds,
            )
            self.batches[batch.id] = batch
            return batch

    def get(self, batch_id: str) -> _MessageBatch:
        """The batch, brought up to date; the caller holds the lock."""
        batch = self.batches.get(batch_id)
        if batch is None:
            raise APIError(404, f"Message batch {batch_id} not found")
        self._advance(batch, time.monotonic())
        return batch

    def _advance(self, batch: _MessageBatch, now: float) -> None:
        if batch.status == "ended":
            return
        settings = self.settings
        work = settings.validating_seconds + settings.processing_seconds
        elapsed = now - batch.created_monotonic
        if batch.cancel_requested_monotonic is not None:
            if now - batch.cancel_requested_monotonic < settings.cancelling_seconds:
                return
            done_at = batch.cancel_requested_monotonic - batch.created_monotonic
            self._end(batch, done_at / work if work else 1.0, "canceled")
            batch.ended_at = batch.created_wall + done_at + settings.cancelling_seconds
            return
        if elapsed >= batch.expiry_seconds and work > batch.expiry_seconds:
            self._end(batch, batch.expiry_seconds / work, "expired")
            batch.ended_at = batch.created_wall + batch.expiry_seconds
            return
        if elapsed >= work:
            self._end(batch, 1.0, "expired")  # all done: nothing is left to expire
            batch.ended_at = batch.created_wall + work

    def _end(
        self, batch: _MessageBatch, progress: float, rest: Literal["canceled", "expired"]
    ) -> None:
        """Process the first ``progress`` share of requests; the rest end as ``rest``."""
        seed = self.settings.seed
        order = sorted(
            batch.requests,
            key=lambda r: hashlib.sha256(f"{seed}:{r.custom_id}".encode()).hexdigest(),
        )
        done = min(len(order), math.floor(len(order) * max(0.0, min(1.0, progress))))
        counts: MessageBatchRequestCounts = {
            "processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0
        }  # fmt: skip
        lines = []
        for position, request in enumerate(order):
            custom_id = request.custom_id
            result: MessageBatchResult
            refused = refusal(
                self.settings, str(request.params.get("model")), request.params.get("messages")
            )
            if position >= done:
                result = {"type": rest}
                counts[rest] += 1
            elif refused is not None and refused.code == _MARKED:
                # The refuse marker: Anthropic declines with a message, not an error.
                message = create_message(request.params, refuse=True)
                result = {"type": "succeeded", "message": message}
                counts["succeeded"] += 1
            elif refused is not None:  # a model no longer served: not_found_error, and so on
                result = _error_result(refused.message, anthropic_error_type(refused.status_code))
                counts["errored"] += 1
            elif request_fails(self.settings, f"{batch.id}:{custom_id}"):
                result = _error_result(
                    f"The simulator rejected this request (per-request error rate "
                    f"{self.settings.error_rate})."
                )
                counts["errored"] += 1
            else:
                try:
                    message = create_message(request.params)
                    result = {"type": "succeeded", "message": message}
                    counts["succeeded"] += 1
                except APIError as exc:
                    result = _error_result(exc.message)
                    counts["errored"] += 1
            line: MessageBatchIndividualResponse = {"custom_id": custom_id, "result": result}
            lines.append(json.dumps(line))
        batch.results = ("\n".join(lines) + "\n").encode() if lines else b""
        batch.counts = counts
        batch.status = "ended"

    def cancel(self, batch_id: str) -> _MessageBatch:
        with self.lock:
            batch = self.get(batch_id)
            if batch.status == "in_progress":
                batch.status = "canceling"
                batch.cancel_requested_monotonic = time.monotonic()
                batch.cancel_initiated_at = time.time()
            return batch

    def page(self, limit: int, after_id: str | None, before_id: str | None) -> list[_MessageBatch]:
        with self.lock:
            newest_first = list(reversed(self.batches.values()))
            ids = [b.id for b in newest_first]
            for cursor in (after_id, before_id):
                if cursor is not None and cursor not in ids:
                    raise APIError(400, f"Unknown pagination cursor '{cursor}'.")
            if after_id is not None:
                newest_first = newest_first[ids.index(after_id) + 1 :]
            elif before_id is not None:
                newest_first = newest_first[: ids.index(before_id)][-limit:]
            page = newest_first[: limit + 1]
            now = time.monotonic()
            for batch in page:
                self._advance(batch, now)
            return page


def _parse_batch(raw: bytes) -> list[_InlineRequest]:
    """The requests of a ``POST /v1/messages/batches`` body, or the error Anthropic sends."""
    if len(raw) > MAX_BATCH_BYTES:
        raise APIError(413, "Request exceeds the 256 MB limit for a message batch.")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise APIError(400, "The request body is not valid JSON.") from None
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise APIError(400, "requests: at least one request is required")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise APIError(400, f"requests: a batch may hold at most {MAX_BATCH_REQUESTS} requests")
    seen: set[str] = set()
    parsed: list[_InlineRequest] = []
    for index, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID_RE.match(custom_id):
            raise APIError(400, f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$")
        if custom_id in seen:
            raise APIError(400, f"requests.{index}.custom_id: '{custom_id}' is not unique")
        seen.add(custom_id)
        params = item.get("params")
        if not isinstance(params, dict):
            raise APIError(400, f"requests.{index}.params: Field required")
        parsed.append(_InlineRequest(custom_id, params))
    return parsed


def router(settings: SimulatorSettings) -> APIRouter:
    """The Anthropic routes (mounted under ``/v1``)."""
    store = _Batches(settings)
    routes = APIRouter(dependencies=[Depends(_require_headers)])

    @routes.post("/messages", response_model=None)
    async def messages(request: Request) -> Message:
        try:
            params = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise APIError(400, "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise APIError(400, "The request body must be a JSON object.")
        if request_fails(settings, json.dumps(params.get("messages"), sort_keys=True)):
            raise APIError(
                400, f"The simulator rejected this request (error rate {settings.error_rate})."
            )
        refused = refusal(settings, str(params.get("model")), params.get("messages"))
        return create_message(params, refuse=refused is not None and refused.code == _MARKED)

    @routes.post("/messages/batches", response_model=None)
    async def create_batch(request: Request) -> MessageBatch:
        batch = store.create(_parse_batch(await request.body()))
        return batch.to_json(str(request.base_url))

    @routes.get("/messages/batches", response_model=None)
    def list_batches(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> MessageBatchList:
        page = store.page(limit, after_id, before_id)
        data = [b.to_json(str(request.base_url)) for b in page[:limit]]
        return {
            "data": data,
            "has_more": len(page) > limit,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    @routes.get("/messages/batches/{batch_id}", response_model=None)
    def retrieve_batch(batch_id: str, request: Request) -> MessageBatch:
        with store.lock:
            return store.get(batch_id).to_json(str(request.base_url))

    @routes.get("/messages/batches/{batch_id}/results")
    def batch_results(batch_id: str) -> Response:
        with store.lock:
            batch = store.get(batch_id)
            if batch.status != "ended":
                raise APIError(
                    400, f"Message batch {batch_id} has not ended; results are not ready yet."
                )
            return Response(batch.results, media_type="application/binary")

    @routes.post("/messages/batches/{batch_id}/cancel", response_model=None)
    def cancel_batch(batch_id: str, request: Request) -> MessageBatch:
        return store.cancel(batch_id).to_json(str(request.base_url))

    @routes.delete("/messages/batches/{batch_id}", response_model=None)
    def delete_batch(batch_id: str) -> DeletedMessageBatch:
        with store.lock:
            batch = store.get(batch_id)
            if batch.status != "ended":
                raise APIError(400, "A message batch can be deleted only once it has ended.")
            del store.batches[batch_id]
        return {"id": batch_id, "type": "message_batch_deleted"}

    return routes
