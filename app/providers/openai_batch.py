"""OpenAI Files + Batches API adapter (also the bundled simulator's protocol).

A batch is one JSONL file of ``/v1/chat/completions`` requests (``custom_id`` = our job id),
at most 50,000 requests and 200 MB. Results come back in an output file (successes) and an
error file (per-request errors, and ``batch_expired`` lines for requests the 24 h window did
not reach), in any order, matched by ``custom_id``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from app.providers.base import (
    BatchHandle,
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderError,
    ProviderLimits,
)
from app.providers.http import ProviderHTTP, RetryPolicy

ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
ENDPOINT = "/v1/chat/completions"
LIMITS = ProviderLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024)
# Per-line error codes worth sending again in a new batch.
RETRYABLE_CODES = frozenset({"batch_expired", "batch_cancelled", "rate_limit_exceeded"})


@dataclass(frozen=True)
class BatchSummary:
    """One batch as ``list_batches`` shows it."""

    external_id: str
    status: str
    reference: str | None
    request_counts: dict[str, int]


class OpenAIBatchProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        completion_window: str = "24h",
        timeout: float = 60.0,
        limits: ProviderLimits = LIMITS,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = ProviderHTTP(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            secret=api_key,
            timeout=timeout,
            policy=policy,
            transport=transport,
            sleep=sleep,
        )
        self._completion_window = completion_window
        self.limits = limits

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._http.request(method, path, **kwargs)

    def list_batches(self, *, limit: int = 100, after: str | None = None) -> list[BatchSummary]:
        """The most recent batches, newest first (one page)."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        data = self._call("GET", "batches", params=params).json()
        return [
            BatchSummary(
                external_id=batch["id"],
                status=batch["status"],
                reference=(batch.get("metadata") or {}).get("thrifty_batch_id"),
                request_counts=dict(batch.get("request_counts") or {}),
            )
            for batch in data.get("data", [])
        ]

    def find_batch(self, *, reference: str) -> BatchHandle | None:
        # Recent batches carry our reference in metadata; a crash between the provider
        # accepting a batch and us recording it must not lead to a second, billed batch.
        data = self._call("GET", "batches", params={"limit": 100}).json()
        for batch in data.get("data", []):
            if (batch.get("metadata") or {}).get("thrifty_batch_id") == reference:
                if batch["status"] in {"failed", "expired", "cancelled", "cancelling"}:
                    continue
                return BatchHandle(batch["id"], batch.get("input_file_id"), batch["status"])
        return None

    def _line(self, model: str, request: BatchRequest) -> bytes:
        body: dict[str, Any] = {"model": model, "messages": request.messages}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        record = {"custom_id": request.custom_id, "method": "POST", "url": ENDPOINT, "body": body}
        return orjson.dumps(record)

    def request_bytes(self, *, model: str, request: BatchRequest) -> int:
        return len(self._line(model, request)) + 1

    def submit(self, *, reference: str, model: str, requests: list[BatchRequest]) -> BatchHandle:
        if len(requests) > self.limits.max_requests:
            raise ProviderError(
                f"a batch holds at most {self.limits.max_requests} requests, got {len(requests)}",
                retryable=False,
            )
        payload = b"".join(self._line(model, r) + b"\n" for r in requests)
        if len(payload) > self.limits.max_bytes:
            raise ProviderError(
                f"a batch file holds at most {self.limits.max_bytes} bytes, got {len(payload)}",
                retryable=False,
            )
        upload = self._call(
            "POST",
            "files",
            data={"purpose": "batch"},
            files={"file": (f"thrifty-{reference}.jsonl", payload, "application/jsonl")},
        ).json()
        batch = self._call(
            "POST",
            "batches",
            json={
                "input_file_id": upload["id"],
                "endpoint": ENDPOINT,
                "completion_window": self._completion_window,
                "metadata": {"thrifty_batch_id": reference},
            },
        ).json()
        return BatchHandle(batch["id"], upload["id"], batch["status"])

    def retrieve(self, external_id: str) -> BatchStatus:
        return _status(self._call("GET", f"batches/{external_id}").json())

    def cancel(self, external_id: str) -> BatchStatus:
        """Ask OpenAI to stop the batch: ``cancelling``, then ``cancelled`` with partial output."""
        return _status(self._call("POST", f"batches/{external_id}/cancel").json())

    def results(self, status: BatchStatus) -> list[BatchResult]:
        results: list[BatchResult] = []
        for file_id in (status.output_file_id, status.error_file_id):
            if not file_id:
                continue
            content = self._call("GET", f"files/{file_id}/content").content
            results.extend(parse_line(line) for line in content.splitlines() if line.strip())
        return results


def _status(batch: dict[str, Any]) -> BatchStatus:
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


def _describe_batch_error(error: dict[str, Any]) -> str:
    line = f" (line {error['line']})" if error.get("line") else ""
    return f"{error.get('code') or 'error'}{line}: {error.get('message')}"


def parse_line(line: str | bytes) -> BatchResult:
    """One output- or error-file line as a result: content and usage, or the error."""
    record = orjson.loads(line)
    custom_id = record["custom_id"]
    response = record.get("response") or {}
    body = response.get("body") or {}
    if record.get("error") or response.get("status_code") != 200:
        error = record.get("error") or body.get("error") or {}
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
    content = body["choices"][0]["message"]["content"]
    return BatchResult(
        custom_id,
        content,
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
        None,
    )
