"""OpenAI Files + Batches API adapter (also the bundled simulator's protocol).

A batch is one JSONL file of ``/v1/chat/completions`` requests (``custom_id`` = our job id),
at most 50,000 requests and 200 MB. Results come back in an output file (successes) and an
error file (per-request errors, and ``batch_expired`` lines for requests the 24 h window did
not reach), in any order, matched by ``custom_id``. What the files and batch objects say is
``openai_format``'s business; this class only moves them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Unpack

from app.providers import openai_format as wire
from app.providers.base import (
    BatchHandle,
    BatchRequest,
    BatchResult,
    BatchStatus,
    ProviderError,
    ProviderLimits,
)
from app.providers.http import HTTPOptions, ProviderHTTP

LIMITS = ProviderLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024)
# How far the provider's clock may be behind ours when we look for batches made since a moment.
CLOCK_SKEW = timedelta(minutes=5)


class OpenAIBatchProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        completion_window: str = "24h",
        limits: ProviderLimits = LIMITS,
        **options: Unpack[HTTPOptions],
    ) -> None:
        self._http = ProviderHTTP(
            base_url=base_url,
            headers=wire.auth_headers(api_key),
            secret=api_key,
            provider="openai_batch",
            **options,
        )
        self._completion_window = completion_window
        self.limits = limits

    def close(self) -> None:
        self._http.close()

    def find_batch(
        self, *, reference: str, custom_ids: frozenset[str], since: datetime
    ) -> BatchHandle | None:
        # Our batches carry our reference in metadata; a crash or a lost answer between the
        # provider accepting a batch and us recording it must not lead to a second, billed
        # batch. Pages go newest first, back to ``since``.
        params: dict[str, str | int] = {"limit": 100}
        oldest = (since - CLOCK_SKEW).timestamp()
        while True:
            page: wire.BatchPage = self._http.request("GET", "batches", params=params).json()
            found = wire.live_batch(page, reference=reference)
            data = page.get("data") or []
            if found is not None or not data or not page.get("has_more"):
                return found
            if data[-1].get("created_at", oldest) < oldest:
                return None
            params = {"limit": 100, "after": data[-1]["id"]}

    def request_bytes(self, *, model: str, request: BatchRequest) -> int:
        return len(wire.batch_line(model, request)) + 1

    def submit(self, *, reference: str, model: str, requests: list[BatchRequest]) -> BatchHandle:
        if len(requests) > self.limits.max_requests:
            raise ProviderError(
                f"a batch holds at most {self.limits.max_requests} requests, got {len(requests)}",
                retryable=False,
            )
        payload = wire.batch_file(model, requests)
        if len(payload) > self.limits.max_bytes:
            raise ProviderError(
                f"a batch file holds at most {self.limits.max_bytes} bytes, got {len(payload)}",
                retryable=False,
            )
        upload: wire.FileObject = self._http.request(
            "POST",
            "files",
            data={"purpose": "batch"},
            files={"file": (f"thrifty-{reference}.jsonl", payload, "application/jsonl")},
        ).json()
        body = wire.create_batch_body(
            input_file_id=upload["id"],
            completion_window=self._completion_window,
            reference=reference,
        )
        # The create is the one call that bills: a retry after an answer that may have been
        # lost first looks the batch up (the upload above is safe to repeat).
        since = datetime.now(UTC)
        ids = frozenset(r.custom_id for r in requests)
        return self._http.create(
            "POST",
            "batches",
            json=body,
            parse=lambda r: wire.handle_of(r.json(), input_file_id=upload["id"]),
            recover=lambda: self.find_batch(reference=reference, custom_ids=ids, since=since),
        )

    def retrieve(self, external_id: str) -> BatchStatus:
        batch: wire.Batch = self._http.request("GET", f"batches/{external_id}").json()
        return wire.status_of(batch)

    def cancel(self, external_id: str) -> BatchStatus:
        """Ask OpenAI to stop the batch: ``cancelling``, then ``cancelled`` with partial output."""
        batch: wire.Batch = self._http.request("POST", f"batches/{external_id}/cancel").json()
        return wire.status_of(batch)

    def results(self, status: BatchStatus) -> list[BatchResult]:
        results: list[BatchResult] = []
        for file_id in (status.output_file_id, status.error_file_id):
            if not file_id:
                continue
            content = self._http.request("GET", f"files/{file_id}/content").content
            results.extend(
                wire.parse_result_line(line) for line in content.splitlines() if line.strip()
            )
        return results
