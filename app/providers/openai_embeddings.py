"""OpenAI-compatible embeddings (``POST /v1/embeddings``): OpenAI, vLLM, Ollama, TEI, ...

``embed(texts)`` returns one vector per text, in order, sending at most ``batch_size`` texts
per call with the same retry policy as every provider call. Bodies and answers are
``openai_format``'s; this class only moves them.
"""

from __future__ import annotations

from typing import Unpack

from app.providers import openai_format as wire
from app.providers.http import HTTPOptions, ProviderHTTP


class OpenAIEmbeddings:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        dimensions: int | None = None,
        batch_size: int = 256,
        **options: Unpack[HTTPOptions],
    ) -> None:
        self._http = ProviderHTTP(
            base_url=base_url,
            headers=wire.auth_headers(api_key),
            secret=api_key,
            provider="openai_embeddings",
            **options,
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
            body = wire.embeddings_body(self.model, chunk, self.dimensions)
            response: wire.EmbeddingsResponse = self._http.request(
                "POST", "embeddings", json=body
            ).json()
            vectors.extend(wire.embedding_vectors(response, expected=len(chunk)))
        return vectors
