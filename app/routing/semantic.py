"""The semantic strategy: routes defined by example utterances (semantic-router's idea).

A prompt's similarity to a route is its highest cosine similarity to the route's utterances
(the cache's embedder, the vector the cache computes anyway). The best route whose
similarity reaches its threshold picks the tier; a prompt near no route is left to the
rules. A route's threshold is the catalog's, or fitted on the catalog's utterances as
labelled examples: each utterance scored against its own route without itself (a positive),
each utterance of another route and of ``semantic_none`` (prompts of no route) against it
(negatives); the cut with the fewest errors (ties: the higher cut) is the threshold.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.catalog.catalog import Catalog, SemanticRoute
from app.routing.learned import TextEmbedder

Array = NDArray[np.float64]


@dataclass(frozen=True)
class SemanticMatch:
    """The best route for a prompt, whether it matched, and the figures behind it."""

    route: str
    tier: str
    similarity: float
    threshold: float

    @property
    def matched(self) -> bool:
        return self.similarity >= self.threshold


def fit_threshold(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The cut with the fewest errors (positives below it, negatives at or above it)."""
    values = sorted({*positives, *negatives})
    cuts = [*values, values[-1] + 1e-6] if values else [1.0]
    pos, neg = np.asarray(positives), np.asarray(negatives)
    errors = [(int((pos < c).sum() + (neg >= c).sum()), -c) for c in cuts]
    return float(-min(errors)[1])


class SemanticRouter:
    """The catalog's routes with their utterances embedded, thresholds fitted or given."""

    def __init__(
        self, routes: Sequence[SemanticRoute], embedder: TextEmbedder, none: Sequence[str] = ()
    ) -> None:
        from app.kit.text import normalise

        self.routes = list(routes)
        self.embedder_name = embedder.name
        self.vectors: list[Array] = [
            np.asarray(embedder.embed([normalise(u) for u in r.utterances]), dtype=np.float64)
            for r in self.routes
        ]
        self.none: Array = (
            np.asarray(embedder.embed([normalise(u) for u in none]), dtype=np.float64)
            if none
            else np.zeros((0, self.vectors[0].shape[1] if self.vectors else 0))
        )
        self.thresholds = [
            route.threshold if route.threshold is not None else self._fit(i)
            for i, route in enumerate(self.routes)
        ]

    def _fit(self, index: int) -> float:
        own = self.vectors[index]
        sims = own @ own.T
        np.fill_diagonal(sims, -1.0)
        positives = sims.max(axis=1).tolist()
        others = [other for j, other in enumerate(self.vectors) if j != index]
        if len(self.none):
            others.append(self.none)
        negatives = [float(v) for other in others for v in (other @ own.T).max(axis=1)]
        return round(fit_threshold(positives, negatives), 4)

    def match(
        self, vectors: NDArray[np.float32] | Sequence[Sequence[float]]
    ) -> list[SemanticMatch]:
        """Each prompt's best route (highest similarity over its threshold's margin)."""
        queries = np.asarray(vectors, dtype=np.float64)
        if not len(queries):
            return []
        sims = np.stack([(queries @ v.T).max(axis=1) for v in self.vectors], axis=1)
        margins = sims - np.asarray(self.thresholds)
        best = margins.argmax(axis=1)
        return [
            SemanticMatch(
                self.routes[b].name, self.routes[b].tier, round(float(sims[i, b]), 4),
                self.thresholds[b],
            )
            for i, b in enumerate(best.tolist())
        ]  # fmt: skip


_lock = threading.Lock()
_built: dict[tuple[int, str], tuple[Catalog, SemanticRouter]] = {}


def semantic_router(catalog: Catalog, embedder: TextEmbedder) -> SemanticRouter | None:
    """The catalog's semantic routes for ``embedder``, embedded once per process; None when
    the catalog has none."""
    if not catalog.semantic_routes:
        return None
    key = (id(catalog), embedder.name)
    with _lock:
        cached = _built.get(key)
        if cached is None or cached[0] is not catalog:
            routes = SemanticRouter(catalog.semantic_routes, embedder, catalog.semantic_none)
            cached = _built[key] = (catalog, routes)
        return cached[1]
