"""The learned router's cut calibrated on the traffic it sees (RouteLLM calibrates its
thresholds on a sample of the traffic; a service routes a stream, so it can keep doing so).

A score's level depends on which training domains a prompt resembles, so the training
quantile for a share of strong calls does not transfer to traffic of another domain (on
leave-domains-out folds a 0.5 target sent 0.18-0.73; docs/routing.md). A ``StreamCut`` keeps
the last ``WINDOW`` scores of one stream (a tenant, in one process) and cuts at their
quantile instead: it starts as the training distribution (``WINDOW`` evenly spread quantiles
of the out-of-fold training scores, so the first prompts get the training cut) and each
routed prompt replaces the oldest score, so after ``WINDOW`` prompts the cut is the traffic's
own. The share of strong calls a target asks for is then kept on any traffic whose scores
move slower than the window; which prompts go to strong is still the router's ranking.

State is per process (each API / worker process keeps its own windows, bounded by
``WINDOW`` floats per tenant it has routed for), so it needs no shared store and restarts
from the training distribution.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable, Iterable

import numpy as np
from numpy.typing import NDArray

WINDOW = 256


class StreamCut:
    """The running cut of one stream of scores."""

    def __init__(self, reference: NDArray[np.float64], window: int = WINDOW) -> None:
        if window < 1:
            raise ValueError("a stream's window holds at least one score")
        levels = (np.arange(window) + 0.5) / window
        start = np.quantile(reference, levels) if len(reference) else np.zeros(window)
        self._scores: deque[float] = deque(start.tolist(), maxlen=window)
        self._lock = threading.Lock()

    def cut(self, share: float) -> float:
        """The score at which ``share`` of the window's scores would go to strong."""
        if share <= 0:
            return float("inf")
        if share >= 1:
            return float("-inf")
        with self._lock:
            recent = np.fromiter(self._scores, dtype=np.float64, count=len(self._scores))
        return float(np.quantile(recent, 1 - share, method="higher"))

    def route(self, score: float, share: float) -> float:
        """The cut for this prompt (from the scores before it), then the prompt joins the
        window. Strong when ``score >= `` the returned cut."""
        threshold = self.cut(share)
        with self._lock:
            self._scores.append(score)
        return threshold


class StreamCuts:
    """One ``StreamCut`` per stream key (a tenant id), created on first use."""

    def __init__(self, reference: NDArray[np.float64], window: int = WINDOW) -> None:
        self._reference, self._window = reference, window
        self._streams: dict[Hashable, StreamCut] = {}
        self._lock = threading.Lock()

    def of(self, key: Hashable) -> StreamCut:
        with self._lock:
            if key not in self._streams:
                self._streams[key] = StreamCut(self._reference, self._window)
            return self._streams[key]


def replay(
    reference: NDArray[np.float64], scores: Iterable[float], share: float, window: int = WINDOW
) -> NDArray[np.bool_]:
    """Which of ``scores``, routed one by one in their order through a fresh stream, go to
    strong: what ``thrifty eval router`` reports as ``realised_share``."""
    stream = StreamCut(reference, window)
    return np.array([s >= stream.route(s, share) for s in scores], dtype=bool)
