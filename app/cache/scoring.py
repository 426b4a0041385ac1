"""Scoring the cache's lookups of labelled pairs: precision, recall and false-hit rate at a
threshold, with the verifier or by plain cosine.

Per lookup of ``b``:
- a *correct hit* returns the entry of its own ``a`` when the pair means the same;
- any other hit is a *wrong hit* (different meaning, or another pair's entry);
- precision = correct / all hits; recall = correct / same-meaning pairs;
- false-hit rate = different-meaning lookups that hit anything / different-meaning pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The thresholds of the report's sweep.
SWEEP = (0.50, 0.60, 0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


@dataclass
class Outcome:
    """What the lookup of one pair's ``b`` found."""

    same: bool
    exact_own: bool = False  # the exact layer answered with the pair's own entry
    exact_other: bool = False
    # (similarity, is own entry, accepted by the verifier), best first
    candidates: list[tuple[float, bool, bool]] = field(default_factory=list)
    # Plain cosine's candidates when they are not the verified path's (documents, whose
    # candidates come from the near-duplicate index): (similarity, is own entry), best first
    cosine_candidates: list[tuple[float, bool]] | None = None
    # Why the verified path refused candidates: the failed check of each (documents)
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Figures:
    threshold: float
    hits: int
    correct: int
    wrong_on_negatives: int
    positives: int
    negatives: int

    @property
    def precision(self) -> float:
        return self.correct / self.hits if self.hits else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.positives if self.positives else 0.0

    @property
    def false_hit_rate(self) -> float:
        return self.wrong_on_negatives / self.negatives if self.negatives else 0.0


def _reduce(lookups: list[Outcome], *, verified: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each lookup as (the similarity down to which it hits, whether that hit is its own
    entry). Candidates are best first, so at any threshold the answer is the first accepted
    candidate at or above it: the first accepted one overall, once the threshold is below it.
    Exact hits answer at every threshold."""
    scores = np.full(len(lookups), -np.inf)
    own = np.zeros(len(lookups), dtype=bool)
    for i, lookup in enumerate(lookups):
        if lookup.exact_own or lookup.exact_other:
            scores[i], own[i] = np.inf, lookup.exact_own
            continue
        if not verified and lookup.cosine_candidates is not None:
            if lookup.cosine_candidates:
                scores[i], own[i] = lookup.cosine_candidates[0]
            continue
        for sim, is_own, accepted in lookup.candidates:
            if accepted or not verified:
                scores[i], own[i] = sim, is_own
                break
    return scores, own


def score(lookups: list[Outcome], *, threshold: float, verified: bool) -> Figures:
    """Figures at ``threshold``: with ``verified`` the first accepted candidate at or above
    it answers; without, plain cosine (the nearest candidate, if at or above it)."""
    scores, own = _reduce(lookups, verified=verified)
    same = np.array([lookup.same for lookup in lookups], dtype=bool)
    hit = scores >= threshold
    return Figures(
        threshold=threshold,
        hits=int(hit.sum()),
        correct=int((hit & own & same).sum()),
        wrong_on_negatives=int((hit & ~same).sum()),
        positives=int(same.sum()),
        negatives=int((~same).sum()),
    )


def recall_at_fhr(lookups: list[Outcome], *, verified: bool, target: float = 0.01) -> float:
    """The best recall over every threshold whose false-hit rate is at most ``target``."""
    scores, own = _reduce(lookups, verified=verified)
    same = np.array([lookup.same for lookup in lookups], dtype=bool)
    negatives = np.sort(scores[~same])[::-1]
    allowed = int(np.floor(target * len(negatives)))
    # hits need a score above the (allowed+1)-th best different-meaning score
    threshold = -np.inf if allowed >= len(negatives) else np.nextafter(negatives[allowed], np.inf)
    good = (scores >= threshold) & own & same
    return float(good.sum() / same.sum()) if same.any() else 0.0
