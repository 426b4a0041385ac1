"""An OpenAI-compatible ``POST /v1/embeddings`` client (OpenAI, vLLM, TEI, Ollama ...)."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from app.embeddings.base import EmbeddingError, Vectors, normalise_rows

# Inputs per request: the OpenAI API takes up to 2,048; smaller requests fail faster.
MAX_INPUTS_PER_REQUEST = 256


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
        self._model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        rows: list[list[float]] = []
        for start in range(0, len(texts), MAX_INPUTS_PER_REQUEST):
            rows.extend(self._request(texts[start : start + MAX_INPUTS_PER_REQUEST]))
        vectors = np.asarray(rows, dtype=np.float32)
        if vectors.shape != (len(texts), self.dimensions):
            raise EmbeddingError(
                f"embeddings API returned shape {vectors.shape}, expected "
                f"({len(texts)}, {self.dimensions})"
            )
        return normalise_rows(vectors)

    def _request(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {
            "model": self._model,
            "input": texts,
            "dimensions": self.dimensions,
            "encoding_format": "float",
        }
        try:
            response = self._client.post("embeddings", json=body)
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"embeddings API unreachable: {exc}") from exc
        if response.status_code != 200:
            raise EmbeddingError(
                f"embeddings API answered {response.status_code}: {response.text[:300]}"
            )
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            return [list(map(float, item["embedding"])) for item in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"malformed embeddings response: {exc}") from exc
