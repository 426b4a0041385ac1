"""OpenAI-compatible embeddings (``POST /v1/embeddings``): OpenAI, vLLM, Ollama, TEI, ...

``embed(texts)`` returns one vector per text, in order, sending at most ``batch_size`` texts
per call with the same retry policy as every provider call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from app.providers.base import ProviderError
from app.providers.http import ProviderHTTP, RetryPolicy


class OpenAIEmbeddings:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        dimensions: int | None = None,
        batch_size: int = 256,
        timeout: float = 60.0,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = ProviderHTTP(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
            secret=api_key,
            timeout=timeout,
            policy=policy,
            transport=transport,
            sleep=sleep,
        )
        self.model = model
        self.dimensions = dimensions
        self._batch_size = batch_size

    def close(self) -> None:
        self._http.close()

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in the order given."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            chunk = texts[start : start + self._batch_size]
            body: dict[str, Any] = {"model": self.model, "input": chunk, "encoding_format": "float"}
            if self.dimensions is not None:
                body["dimensions"] = self.dimensions
            data = self._http.request("POST", "embeddings", json=body).json()
            items = sorted(data.get("data", []), key=lambda item: item["index"])
            if len(items) != len(chunk):
                raise ProviderError(
                    f"POST embeddings: asked for {len(chunk)} vectors, got {len(items)}",
                    retryable=True,
                )
            vectors.extend([float(x) for x in item["embedding"]] for item in items)
        return vectors
