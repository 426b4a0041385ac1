"""The process's embedder: built once per process (each Celery worker loads the model once)."""

from __future__ import annotations

import threading

from app.config import Settings, get_settings
from app.embeddings.base import Embedder, EmbeddingError

_lock = threading.Lock()
_embedder: Embedder | None = None


def build_embedder(settings: Settings) -> Embedder:
    """A new embedder from settings: ``local`` (MiniLM on the CPU) or ``openai``."""
    if settings.embedding_backend == "openai":
        from app.embeddings.openai import OpenAIEmbedder

        if not settings.embedding_base_url:
            raise EmbeddingError("set THRIFTY_EMBEDDING_BASE_URL for the openai embedding backend")
        return OpenAIEmbedder(
            base_url=settings.embedding_base_url,
            model=settings.embedding_model,
            api_key=settings.embedding_api_key,
            dimensions=settings.embedding_dimensions,
        )
    from app.embeddings.local import LocalEmbedder

    return LocalEmbedder(settings.embedding_model_path)


def get_embedder() -> Embedder:
    """The shared embedder, loaded on first use and kept for the life of the process."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                _embedder = build_embedder(get_settings())
    return _embedder
