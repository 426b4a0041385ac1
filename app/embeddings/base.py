"""The interface every embedder implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class EmbeddingError(Exception):
    """The embedder could not produce vectors (a remote API failed, a wrong dimension...)."""


class Embedder(Protocol):
    # Name of the model; stored nowhere, but shown by the CLI and the benchmark.
    name: str
    dimensions: int

    def embed(self, texts: list[str]) -> Vectors:
        """L2-normalised vectors, one row per text, in order. One call for the whole list."""
        ...


def normalise_rows(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: Vectors = (vectors / norms).astype(np.float32)
    return normalised
