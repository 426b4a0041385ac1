"""Anthropic Message Batches adapter.

A batch is one ``POST /v1/messages/batches`` holding inline ``requests`` (``custom_id`` = our
job id, ``params`` = a Messages API request), at most 100,000 requests or 256 MB. It stays
``in_progress`` until it ``ended`` (or ``canceling`` after a cancel); then a JSONL results
file holds one line per request whose ``result.type`` is ``succeeded``, ``errored``,
``canceled`` or ``expired``. How those statuses and lines become ours is
``anthropic_format``'s business; this class only moves the bytes.

Anthropic batches carry no metadata, so ``find_batch`` cannot recognise a batch created by
a run that crashed before recording it; such a window is sent again (see docs/providers.md).
"""

from __future__ import annotations

from typing import Unpack

from app.providers import anthropic_format as wire
from app.providers.base import (
    BatchHandle,
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderError,
    ProviderLimits,
)
from app.providers.http import HTTPOptions, ProviderHTTP

LIMITS = ProviderLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024)


class AnthropicBatchProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        anthropic_version: str = wire.API_VERSION,
        default_max_tokens: int = wire.DEFAULT_MAX_TOKENS,
        limits: ProviderLimits = LIMITS,
        **options: Unpack[HTTPOptions],
    ) -> None:
        # Accept the base URL with or without the /v1 suffix (the SDK's is without it).
        root = base_url.rstrip("/").removesuffix("/v1")
        self._http = ProviderHTTP(
            base_url=root,
            headers=wire.auth_headers(api_key, version=anthropic_version),
            secret=api_key,
            **options,
        )
        self._default_max_tokens = default_max_tokens
        self.limits = limits

    def close(self) -> None:
        self._http.close()

    def request_bytes(self, *, model: str, request: BatchRequest) -> int:
        entry = wire.batch_entry(model, request, default_max_tokens=self._default_max_tokens)
        return len(wire.encode(entry)) + 1

    def find_batch(self, *, reference: str) -> BatchHandle | None:
        return None  # no metadata to recognise our batches by; see the module docstring

    def submit(self, *, reference: str, model: str, requests: list[BatchRequest]) -> BatchHandle:
        if len(requests) > self.limits.max_requests:
            raise ProviderError(
                f"a batch holds at most {self.limits.max_requests} requests, got {len(requests)}",
                retryable=False,
            )
        body = wire.encode(
            wire.create_batch_body(model, requests, default_max_tokens=self._default_max_tokens)
        )
        if len(body) > self.limits.max_bytes:
            raise ProviderError(
                f"a batch holds at most {self.limits.max_bytes} bytes, got {len(body)}",
                retryable=False,
            )
        batch: wire.MessageBatch = self._http.request(
            "POST",
            "v1/messages/batches",
            content=body,
            headers={"content-type": "application/json"},
        ).json()
        return wire.handle_of(batch)

    def retrieve(self, external_id: str) -> BatchStatus:
        batch: wire.MessageBatch = self._http.request(
            "GET", f"v1/messages/batches/{external_id}"
        ).json()
        return wire.status_of(batch)

    def cancel(self, external_id: str) -> BatchStatus:
        batch: wire.MessageBatch = self._http.request(
            "POST", f"v1/messages/batches/{external_id}/cancel"
        ).json()
        return wire.status_of(batch)

    def results(self, status: BatchStatus) -> list[BatchResult]:
        if status.output_file_id is None:
            return []
        # Fetched from our configured host, whatever host results_url names: the key is
        # only ever sent where the operator pointed us.
        path = f"v1/messages/batches/{status.external_id}/results"
        text = self._http.request("GET", path).text
        return [wire.parse_result_line(line) for line in text.splitlines() if line.strip()]
