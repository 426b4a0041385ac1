"""RouteLLM's figures for a router's scores on outcome data.

A router sends the prompts it scores highest to the strong model. For every share of strong
calls the quality is the mean correctness of the mix; PGR is the share of the weak-to-strong
quality gap that mix recovers. Tied scores are one block: a mix that takes part of a block
takes a random part of it, so the curve is linear across a block (a constant router is the
random router, APGR 0.5 in expectation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Curve:
    """The quality of the mix at each block edge: ``shares[i]`` of calls to strong."""

    shares: Floats
    quality: Floats
    weak_quality: float
    strong_quality: float
    # The smallest score sent to strong at each edge (inf at share 0).
    thresholds: Floats

    @property
    def pgr(self) -> Floats:
        gap = self.strong_quality - self.weak_quality
        if gap <= 0:
            return np.zeros_like(self.quality)
        return (self.quality - self.weak_quality) / gap

    def apgr(self) -> float:
        """Area under the PGR curve over the share of strong calls in [0, 1]."""
        pgr, shares = self.pgr, self.shares
        return float(np.sum((pgr[1:] + pgr[:-1]) / 2 * np.diff(shares)))

    def share_reaching(self, quality: float) -> float:
        """The smallest share of strong calls whose mix reaches ``quality`` (1.0 if none)."""
        q, s = self.quality, self.shares
        if q[0] >= quality:
            return 0.0
        for i in range(1, len(q)):
            if q[i] >= quality:
                # linear inside the block between edges i-1 and i
                step = q[i] - q[i - 1]
                part = 1.0 if step <= 0 else (quality - q[i - 1]) / step
                return float(s[i - 1] + part * (s[i] - s[i - 1]))
        return 1.0

    def share_at_quality_fraction(self, fraction: float) -> float:
        """Strong share whose quality reaches ``fraction`` of the all-strong quality."""
        return self.share_reaching(fraction * self.strong_quality - 1e-12)

    def cpt(self, pgr: float) -> float:
        """Call-performance threshold: strong share that recovers ``pgr`` of the gap."""
        gap = self.strong_quality - self.weak_quality
        return self.share_reaching(self.weak_quality + pgr * gap - 1e-12)


Flags = Sequence[bool] | NDArray[np.bool_] | NDArray[np.float64]


def curve(scores: Sequence[float] | Floats, weak: Flags, strong: Flags) -> Curve:
    """The quality curve of routing by ``scores`` (higher: more worth the strong model)."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    g = np.asarray(strong, dtype=np.float64) - w
    n = len(s)
    if n == 0:
        raise ValueError("no outcomes to evaluate")
    order = np.argsort(-s, kind="stable")
    s_sorted, gains = s[order], g[order]
    # block edges: after the last element of each run of equal scores
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True]) + 1
    taken = np.r_[0, ends]
    cumulative = np.r_[0.0, np.cumsum(gains)][taken]
    base = float(w.mean())
    return Curve(
        shares=taken / n,
        quality=base + cumulative / n,
        weak_quality=base,
        strong_quality=float(np.asarray(strong, dtype=np.float64).mean()),
        thresholds=np.r_[np.inf, s_sorted[ends - 1]],
    )


def threshold_for_share(scores: Floats, share: float) -> float:
    """The score cut that sends about ``share`` of these scores to strong (score >= cut)."""
    if share <= 0:
        return float("inf")
    if share >= 1:
        return float("-inf")
    return float(np.quantile(scores, 1 - share, method="higher"))


def bootstrap(
    scores: Floats,
    weak: Sequence[bool],
    strong: Sequence[bool],
    *,
    rounds: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """Standard errors of APGR and the 95%-quality share over resampled prompts."""
    rng = np.random.default_rng(seed)
    w, st = np.asarray(weak), np.asarray(strong)
    apgrs, shares = [], []
    for _ in range(rounds):
        pick = rng.integers(0, len(scores), len(scores))
        c = curve(scores[pick], w[pick], st[pick])
        apgrs.append(c.apgr())
        shares.append(c.share_at_quality_fraction(0.95))
    return {"apgr_se": float(np.std(apgrs)), "share95_se": float(np.std(shares))}
