"""The cache's embedder over an OpenAI-compatible ``POST /v1/embeddings`` (OpenAI, vLLM, TEI,
Ollama ...), built on the provider adapter so it shares its retries and key redaction."""

from __future__ import annotations

import httpx
import numpy as np

from app.embeddings.base import EmbeddingError, Vectors, normalise_rows
from app.providers.base import ProviderError
from app.providers.http import RetryPolicy
from app.providers.openai_embeddings import OpenAIEmbeddings

# Inputs per request: the OpenAI API takes up to 2,048; smaller requests fail faster.
MAX_INPUTS_PER_REQUEST = 256
# Ingest waits on this call: retry a blip once, then let the exact layer carry on without it.
INGEST_RETRIES = RetryPolicy(max_attempts=2, initial_wait=0.2, max_wait=1.0)


class OpenAIEmbedder:
    """Sends a list of texts per request; asks for ``dimensions`` so vectors fit the column."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        dimensions: int = 384,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = f"openai:{model}"
        self.dimensions = dimensions
        self._client = OpenAIEmbeddings(
            base_url=base_url,
            api_key=api_key or "",
            model=model,
            dimensions=dimensions,
            batch_size=MAX_INPUTS_PER_REQUEST,
            timeout=timeout,
            policy=INGEST_RETRIES,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        try:
            rows = self._client.embed(texts)
        except ProviderError as exc:
            raise EmbeddingError(f"embeddings API failed: {exc}") from exc
        vectors = np.asarray(rows, dtype=np.float32)
        if vectors.shape != (len(texts), self.dimensions):
            raise EmbeddingError(
                f"embeddings API returned shape {vectors.shape}, expected "
                f"({len(texts)}, {self.dimensions})"
            )
        return normalise_rows(vectors)
