"""OpenAI-compatible chat completions, one request at a time, many at once.

The ``realtime`` mode's path, for OpenAI itself and for self-hosted servers that speak its
protocol (vLLM, Ollama, llama.cpp's server, LM Studio, ...). Requests run on a thread pool of
``concurrency`` threads sharing one connection pool, so a sync Celery task can call it.
Bodies and answers are ``openai_format``'s; this class only moves them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Unpack

from app.providers import openai_format as wire
from app.providers.base import BatchRequest, BatchResult, ProviderError
from app.providers.http import HTTPOptions, ProviderHTTP

# A model answering a long prompt takes longer than a batch API call.
TIMEOUT = 120.0


class OpenAIRealtimeProvider:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        service_tier: str | None = None,
        **options: Unpack[HTTPOptions],
    ) -> None:
        """``service_tier="flex"``: every call asks for OpenAI's flex tier (the ``flex``
        mode's adapter, built by ``registry.get_flex_provider``)."""
        options.setdefault("timeout", TIMEOUT)
        self._service_tier = service_tier
        self._http = ProviderHTTP(
            base_url=base_url,
            headers=wire.auth_headers(api_key),
            secret=api_key,
            provider="openai_flex" if service_tier == "flex" else "openai_realtime",
            **options,
        )

    def close(self) -> None:
        self._http.close()

    def _complete(self, model: str, request: BatchRequest) -> BatchResult:
        """One request's outcome; failures after retries come back as ``error``."""
        body = wire.chat_body(model, request, service_tier=self._service_tier)
        try:
            completion: wire.ResponseBody = self._http.request(
                "POST", "chat/completions", json=body
            ).json()
            return wire.completion_result(request.custom_id, completion)
        except ProviderError as exc:
            return wire.failed_call_result(request.custom_id, exc)
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

    def complete_many(
        self, *, model: str, requests: list[BatchRequest], concurrency: int
    ) -> list[BatchResult]:
        """Every request's outcome, in input order, with at most ``concurrency`` in flight."""
        if not requests:
            return []
        workers = max(1, min(concurrency, len(requests)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="realtime") as pool:
            return list(pool.map(lambda r: self._complete(model, r), requests))
