"""Anthropic Message Batches adapter.

A batch is one ``POST /v1/messages/batches`` holding inline ``requests`` (``custom_id`` = our
job id, ``params`` = a Messages API request), at most 100,000 requests or 256 MB. It stays
``in_progress`` until it ``ended`` (or ``canceling`` after a cancel); then a JSONL results
file holds one line per request whose ``result.type`` is ``succeeded``, ``errored``,
``canceled`` or ``expired``.

Statuses are mapped onto the OpenAI-style names the batching service knows: ``in_progress``,
``cancelling``, and on ``ended``: ``cancelled`` if a cancel was asked for, ``expired`` if
nothing ran before the window closed, else ``completed`` (per-request errors and expiries
then fail their own jobs).

Anthropic batches carry no metadata, so ``find_batch`` cannot recognise a batch created by
a run that crashed before recording it; such a window is sent again (see docs/providers.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from app.providers.base import (
    BatchHandle,
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderError,
    ProviderLimits,
)
from app.providers.http import ProviderHTTP, RetryPolicy

API_VERSION = "2023-06-01"
LIMITS = ProviderLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024)
# The Messages API requires max_tokens; used when a job sets no output limit.
DEFAULT_MAX_TOKENS = 1024
_RETRYABLE_ERRORS = frozenset({"api_error", "overloaded_error", "rate_limit_error"})


class AnthropicBatchProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        anthropic_version: str = API_VERSION,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout: float = 60.0,
        limits: ProviderLimits = LIMITS,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # Accept the base URL with or without the /v1 suffix (the SDK's is without it).
        root = base_url.rstrip("/").removesuffix("/v1")
        self._http = ProviderHTTP(
            base_url=root,
            headers={"x-api-key": api_key, "anthropic-version": anthropic_version},
            secret=api_key,
            timeout=timeout,
            policy=policy,
            transport=transport,
            sleep=sleep,
        )
        self._default_max_tokens = default_max_tokens
        self.limits = limits

    def close(self) -> None:
        self._http.close()

    def params(self, *, model: str, request: BatchRequest) -> dict[str, Any]:
        """A Messages API request body: system messages move to the ``system`` parameter."""
        system = [m["content"] for m in request.messages if m["role"] == "system"]
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens or self._default_max_tokens,
            "messages": [
                {"role": m["role"], "content": m["content"]}
                for m in request.messages
                if m["role"] != "system"
            ],
        }
        if system:
            params["system"] = "\n\n".join(system)
        if request.temperature is not None:
            params["temperature"] = request.temperature
        return params

    def _entry(self, model: str, request: BatchRequest) -> dict[str, Any]:
        return {"custom_id": request.custom_id, "params": self.params(model=model, request=request)}

    def request_bytes(self, *, model: str, request: BatchRequest) -> int:
        return len(json.dumps(self._entry(model, request), ensure_ascii=False).encode()) + 1

    def find_batch(self, *, reference: str) -> BatchHandle | None:
        return None  # no metadata to recognise our batches by; see the module docstring

    def submit(self, *, reference: str, model: str, requests: list[BatchRequest]) -> BatchHandle:
        if len(requests) > self.limits.max_requests:
            raise ProviderError(
                f"a batch holds at most {self.limits.max_requests} requests, got {len(requests)}",
                retryable=False,
            )
        body = json.dumps(
            {"requests": [self._entry(model, r) for r in requests]}, ensure_ascii=False
        ).encode()
        if len(body) > self.limits.max_bytes:
            raise ProviderError(
                f"a batch holds at most {self.limits.max_bytes} bytes, got {len(body)}",
                retryable=False,
            )
        batch = self._http.request(
            "POST",
            "v1/messages/batches",
            content=body,
            headers={"content-type": "application/json"},
        ).json()
        return BatchHandle(batch["id"], None, _status_name(batch))

    def retrieve(self, external_id: str) -> BatchStatus:
        return _status(self._http.request("GET", f"v1/messages/batches/{external_id}").json())

    def cancel(self, external_id: str) -> BatchStatus:
        return _status(
            self._http.request("POST", f"v1/messages/batches/{external_id}/cancel").json()
        )

    def list_batches(self, *, limit: int = 100) -> list[dict[str, Any]]:
        data = self._http.request("GET", "v1/messages/batches", params={"limit": limit}).json()
        return list(data.get("data", []))

    def results(self, status: BatchStatus) -> list[BatchResult]:
        if status.output_file_id is None:
            return []
        # Fetched from our configured host, whatever host results_url names: the key is
        # only ever sent where the operator pointed us.
        path = f"v1/messages/batches/{status.external_id}/results"
        text = self._http.request("GET", path).text
        return [parse_result(line) for line in text.splitlines() if line.strip()]


def _status_name(batch: dict[str, Any]) -> str:
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


def _status(batch: dict[str, Any]) -> BatchStatus:
    name = _status_name(batch)
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


def parse_result(line: str) -> BatchResult:
    """One results line as a result: text and usage, or why there is none."""
    record = json.loads(line)
    custom_id = record["custom_id"]
    result = record.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        message = result.get("message") or {}
        text = "".join(
            block.get("text", "")
            for block in message.get("content") or []
            if block.get("type") == "text"
        )
        usage = message.get("usage") or {}
        return BatchResult(
            custom_id,
            text,
            int(usage.get("input_tokens") or 0),
            int(usage.get("output_tokens") or 0),
            None,
        )
    if kind == "errored":
        outer: dict[str, Any] = result.get("error") or {}
        nested = outer.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else outer
        code = inner.get("type") or "errored"
        message = inner.get("message") or "the request failed"
        return BatchResult(
            custom_id, None, 0, 0, message, error_code=code, retryable=code in _RETRYABLE_ERRORS
        )
    if kind == "canceled":
        reason = "canceled: the batch was cancelled before this request ran"
        return BatchResult(custom_id, None, 0, 0, reason, error_code="canceled", retryable=True)
    if kind == "expired":
        reason = "expired: the batch's 24 h window ended before this request ran"
        return BatchResult(custom_id, None, 0, 0, reason, error_code="expired", retryable=True)
    return BatchResult(custom_id, None, 0, 0, f"unknown result type {kind!r}")
