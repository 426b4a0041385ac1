"""OpenAI-compatible chat completions, one request at a time, many at once.

The ``realtime`` mode's path, for OpenAI itself and for self-hosted servers that speak its
protocol (vLLM, Ollama, llama.cpp's server, LM Studio, ...). Requests run on a thread pool of
``concurrency`` threads sharing one connection pool, so a sync Celery task can call it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from app.providers.base import BatchRequest, BatchResult, ProviderError
from app.providers.http import ProviderHTTP, RetryPolicy


class OpenAIRealtimeProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 120.0,
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

    def close(self) -> None:
        self._http.close()

    def complete(self, *, model: str, request: BatchRequest) -> BatchResult:
        """One request's outcome; failures after retries come back as ``error``."""
        body: dict[str, Any] = {"model": model, "messages": request.messages}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        try:
            data = self._http.request("POST", "chat/completions", json=body).json()
            content = data["choices"][0]["message"]["content"]
            usage = data.get("usage") or {}
        except ProviderError as exc:
            return BatchResult(
                request.custom_id,
                None,
                0,
                0,
                str(exc),
                error_code=f"http_{exc.status_code}" if exc.status_code else "connection_error",
                retryable=exc.retryable,
            )
        except (ValueError, KeyError, IndexError, TypeError):
            return BatchResult(
                request.custom_id,
                None,
                0,
                0,
                "POST chat/completions: the response is not a chat completion",
                error_code="invalid_response",
                retryable=True,
            )
        return BatchResult(
            request.custom_id,
            content if isinstance(content, str) else "",
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            None,
        )

    def complete_many(
        self, *, model: str, requests: list[BatchRequest], concurrency: int
    ) -> list[BatchResult]:
        """Every request's outcome, in input order, with at most ``concurrency`` in flight."""
        if not requests:
            return []
        workers = max(1, min(concurrency, len(requests)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="realtime") as pool:
            return list(pool.map(lambda r: self.complete(model=model, request=r), requests))
