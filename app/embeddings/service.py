"""The process's embedder: built once per process (each Celery worker loads the model once)."""

from __future__ import annotations

import threading

from app.config import Settings, get_settings
from app.embeddings.base import Embedder, EmbeddingError

_lock = threading.Lock()
_embedder: Embedder | None = None
# Intra-op threads of the local model (None: the runtime's default, every core); a worker's
# pool process sets 1, its siblings sharing the cores.
_threads: int | None = None

LOCAL_NAME = "local:all-MiniLM-L6-v2"


def set_threads(threads: int | None) -> None:
    """Threads of the local embedder built after this call (and of torch, when it runs)."""
    global _threads
    _threads = threads
    if threads and get_settings().embedding_runtime == "torch":
        import torch

        torch.set_num_threads(threads)


def embedder_name(settings: Settings) -> str:
    """The name the embedder built from ``settings`` reports, without loading it (a trained
    router records the name of the embedder its vectors came from)."""
    if settings.embedding_backend == "openai":
        return f"openai:{settings.embedding_model}"
    path = settings.embedding_model_path
    name = f"local:{path.name}" if path else LOCAL_NAME
    return f"{name}:int8" if settings.embedding_runtime == "onnx-int8" else name


def build_embedder(settings: Settings) -> Embedder:
    """A new embedder from settings: ``local`` (MiniLM on the CPU, through ONNX Runtime or
    torch as ``embedding_runtime`` says) or ``openai``."""
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
    if settings.embedding_runtime == "torch":
        from app.embeddings.local import LocalEmbedder

        return LocalEmbedder(settings.embedding_model_path)
    from app.embeddings.local import bundled_model_path
    from app.embeddings.onnx import OnnxEmbedder

    path = settings.embedding_model_path
    return OnnxEmbedder(
        path or bundled_model_path(),
        home=settings.home,
        name=f"local:{path.name}" if path else LOCAL_NAME,
        precision="int8" if settings.embedding_runtime == "onnx-int8" else "fp32",
        threads=_threads,
    )


def get_embedder() -> Embedder:
    """The shared embedder, loaded on first use and kept for the life of the process."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                _embedder = build_embedder(get_settings())
    return _embedder
