"""OpenAI Files + Batches API adapter (also the bundled simulator's protocol)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from app.providers.base import BatchHandle, BatchRequest, BatchResult, BatchStatus, ProviderError

ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
ENDPOINT = "/v1/chat/completions"


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return False


_retry = retry(
    retry=retry_if_exception(_transient),
    wait=wait_exponential_jitter(initial=0.5, max=20),
    stop=stop_after_attempt(5),
    reraise=True,
)


class OpenAIBatchProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        completion_window: str = "24h",
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        self._completion_window = completion_window

    def close(self) -> None:
        self._client.close()

    @_retry
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._client.request(method, path, **kwargs)
        response.raise_for_status()
        return response

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._request(method, path, **kwargs)
        except httpx.HTTPStatusError as exc:
            raise ProviderError(
                f"{method} {path}: HTTP {exc.response.status_code}: {_message(exc.response)}",
                retryable=_transient(exc),
            ) from None
        except httpx.TransportError as exc:
            raise ProviderError(f"{method} {path}: {type(exc).__name__}", retryable=True) from None

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

    def submit(self, *, reference: str, model: str, requests: list[BatchRequest]) -> BatchHandle:
        lines = []
        for request in requests:
            body: dict[str, Any] = {"model": model, "messages": request.messages}
            if request.max_tokens is not None:
                body["max_tokens"] = request.max_tokens
            lines.append(
                json.dumps(
                    {
                        "custom_id": request.custom_id,
                        "method": "POST",
                        "url": ENDPOINT,
                        "body": body,
                    }
                )
            )
        payload = ("\n".join(lines) + "\n").encode()
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
        batch = self._call("GET", f"batches/{external_id}").json()
        errors = (batch.get("errors") or {}).get("data") or []
        error = "; ".join(str(e.get("message")) for e in errors) or None
        return BatchStatus(
            external_id=batch["id"],
            status=batch["status"],
            ended=batch["status"] in ENDED,
            output_file_id=batch.get("output_file_id"),
            error_file_id=batch.get("error_file_id"),
            error=error,
        )

    def results(self, status: BatchStatus) -> list[BatchResult]:
        results: list[BatchResult] = []
        for file_id in (status.output_file_id, status.error_file_id):
            if not file_id:
                continue
            content = self._call("GET", f"files/{file_id}/content").text
            results.extend(_parse_line(line) for line in content.splitlines() if line.strip())
        return results


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _parse_line(line: str) -> BatchResult:
    record = json.loads(line)
    custom_id = record["custom_id"]
    response = record.get("response") or {}
    body = response.get("body") or {}
    if record.get("error") or response.get("status_code") != 200:
        error = record.get("error") or body.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        return BatchResult(custom_id, None, 0, 0, message or f"HTTP {response.get('status_code')}")
    usage = body.get("usage") or {}
    content = body["choices"][0]["message"]["content"]
    return BatchResult(
        custom_id,
        content,
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
        None,
    )
