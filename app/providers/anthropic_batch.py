"""Anthropic Message Batches adapter.

A batch is one ``POST /v1/messages/batches`` holding inline ``requests`` (``custom_id`` = our
job id, ``params`` = a Messages API request), at most 100,000 requests or 256 MB. It stays
``in_progress`` until it ``ended`` (or ``canceling`` after a cancel); then a JSONL results
file holds one line per request whose ``result.type`` is ``succeeded``, ``errored``,
``canceled`` or ``expired``. How those statuses and lines become ours is
``anthropic_format``'s business; this class only moves the bytes.

Anthropic batches carry no metadata, so each request's ``custom_id`` is the job id tagged
with our batch id (hashed, ``anthropic_format.batch_tag``), and ``find_batch`` recognises a
batch an earlier attempt may have created by its requests: it lists the batches created
since that attempt, and one with as many requests as ours is adopted once its results show
exactly our ``custom_id``s with our batch's tag. An earlier batch of the same jobs (one of
another model they fell back from) has another tag, so it is never adopted.
Until such a candidate has ended its requests cannot be read, so the attempt waits (a
retryable error) rather than sending a second, billed copy (see docs/providers.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
# How far the provider's clock may be behind ours when we look for batches made since a moment.
CLOCK_SKEW = timedelta(minutes=5)
# Any tag: every tag is as long, so a request's size does not depend on its batch.
_SIZE_TAG = "0" * wire.TAG_LENGTH


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
            provider="anthropic_batch",
            **options,
        )
        self._default_max_tokens = default_max_tokens
        self.limits = limits

    def close(self) -> None:
        self._http.close()

    def request_bytes(self, *, model: str, request: BatchRequest) -> int:
        entry = wire.batch_entry(
            model, request, default_max_tokens=self._default_max_tokens, tag=_SIZE_TAG
        )
        return len(wire.encode(entry)) + 1

    def find_batch(
        self, *, reference: str, custom_ids: frozenset[str], since: datetime
    ) -> BatchHandle | None:
        tag = wire.batch_tag(reference)
        ours = {wire.tagged_id(c, tag) for c in custom_ids}
        for batch in self._created_since(since):
            if wire.request_total(batch) != len(custom_ids):
                continue
            if batch["processing_status"] != "ended":
                raise ProviderError(
                    f"batch {batch['id']}, created since an attempt whose answer was lost, "
                    f"holds {len(custom_ids)} requests like {reference}; waiting for it to end "
                    "to compare its requests before sending again",
                    retryable=True,
                )
            if self._wire_ids(wire.status_of(batch)) == ours:
                return wire.handle_of(batch)
        return None

    def _wire_ids(self, status: BatchStatus) -> set[str]:
        """The ``custom_id``s, tags and all, of an ended batch's results."""
        return {wire.result_wire_id(line) for line in self._result_lines(status)}

    def _created_since(self, since: datetime) -> list[wire.MessageBatch]:
        """Batches the provider created after ``since`` (less the clock skew), newest first."""
        oldest = since - CLOCK_SKEW
        found: list[wire.MessageBatch] = []
        params: dict[str, str | int] = {"limit": 100}
        while True:
            page: wire.MessageBatchList = self._http.request(
                "GET", "v1/messages/batches", params=params
            ).json()
            for batch in page.get("data") or []:
                created = wire.created_at(batch)
                if created is not None and created < oldest:
                    return found
                found.append(batch)
            last = page.get("last_id")
            if not page.get("has_more") or not last:
                return found
            params = {"limit": 100, "after_id": last}

    def submit(self, *, reference: str, model: str, requests: list[BatchRequest]) -> BatchHandle:
        if len(requests) > self.limits.max_requests:
            raise ProviderError(
                f"a batch holds at most {self.limits.max_requests} requests, got {len(requests)}",
                retryable=False,
            )
        if any(len(r.custom_id) > wire.MAX_CUSTOM_ID for r in requests):
            raise ProviderError(
                f"a custom_id holds at most {wire.MAX_CUSTOM_ID} characters before its tag",
                retryable=False,
            )
        body = wire.encode(
            wire.create_batch_body(
                model,
                requests,
                default_max_tokens=self._default_max_tokens,
                tag=wire.batch_tag(reference),
            )
        )
        if len(body) > self.limits.max_bytes:
            raise ProviderError(
                f"a batch holds at most {self.limits.max_bytes} bytes, got {len(body)}",
                retryable=False,
            )
        # The create bills: a retry after an answer that may have been lost first looks for
        # the batch that attempt may have made.
        since = datetime.now(UTC)
        ids = frozenset(r.custom_id for r in requests)
        return self._http.create(
            "POST",
            "v1/messages/batches",
            content=body,
            headers={"content-type": "application/json"},
            parse=lambda r: wire.handle_of(r.json()),
            recover=lambda: self.find_batch(reference=reference, custom_ids=ids, since=since),
        )

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
        return [wire.parse_result_line(line) for line in self._result_lines(status)]

    def _result_lines(self, status: BatchStatus) -> list[str]:
        if status.output_file_id is None:
            return []
        # Fetched from our configured host, whatever host results_url names: the key is
        # only ever sent where the operator pointed us.
        path = f"v1/messages/batches/{status.external_id}/results"
        text = self._http.request("GET", path).text
        return [line for line in text.splitlines() if line.strip()]
