"""Per-tenant routing strategies and the quality knob.

``rules`` is the rule router (``service.route``); ``learned`` sends a job to the catalog's
strong model when the trained router's score (the expected gain of the strong model) reaches
the cut for the share of strong calls that kept the tenant's ``quality_target`` of the
all-strong quality on the router's held-out training folds, and to the weak model otherwise.
That cut is the share's quantile of the tenant's recent scores in this process
(``calibration.StreamCut``, starting from the training scores), so the share holds on
traffic unlike the training data. The trained router is the
directory the catalog's ``[learned] router_dir`` names, loaded once per process.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from app.catalog.catalog import Catalog
from app.config import PROJECT_ROOT
from app.kit.errors import ValidationFailed
from app.routing.learned import LearnedRouter, RouterLoadError, load_router


class Strategy(enum.StrEnum):
    rules = "rules"
    learned = "learned"
    semantic = "semantic"


DEFAULT_STRATEGY = Strategy.rules
DEFAULT_QUALITY_TARGET = 0.95


@dataclass(frozen=True)
class TenantRouting:
    """A tenant's effective routing settings (stored values, defaults for unset ones)."""

    strategy: Strategy
    quality_target: float

    @classmethod
    def of(cls, strategy: str | None, quality_target: float | None) -> TenantRouting:
        return cls(
            Strategy(strategy) if strategy else DEFAULT_STRATEGY,
            DEFAULT_QUALITY_TARGET if quality_target is None else quality_target,
        )


class RouterUnavailable(RouterLoadError):
    """The catalog names no trained router, or its directory does not load."""


def router_directory(catalog: Catalog) -> Path | None:
    """Where the catalog's trained router lives (relative paths: from the repository root);
    None when the catalog names none."""
    if catalog.learned is None or not catalog.learned.router_dir:
        return None
    path = Path(catalog.learned.router_dir).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def learned_router(catalog: Catalog) -> LearnedRouter:
    """The catalog's trained router, read once per process; ``RouterUnavailable`` saying why
    when there is none or it does not load."""
    directory = router_directory(catalog)
    if directory is None:
        raise RouterUnavailable(
            "the learned strategy needs a trained router: train one with "
            "`thrifty router train --outcomes FILE --out DIR` and set `router_dir = DIR` "
            "under [learned] in the catalog"
        )
    try:
        return load_router(directory)
    except RouterLoadError as exc:
        raise RouterUnavailable(f"the learned strategy is unavailable: {exc}") from exc


def check_configured_router(catalog: Catalog) -> None:
    """At start-up: a catalog naming a router directory that does not load is an error
    (``RouterUnavailable``); naming none is fine (``learned`` is then refused per tenant)."""
    if router_directory(catalog) is not None:
        learned_router(catalog)


def check_available(catalog: Catalog, strategy: Strategy) -> None:
    """Refuse (422) a strategy this process cannot run."""
    if strategy == Strategy.semantic and not catalog.semantic_routes:
        raise ValidationFailed(
            "strategy: the semantic strategy needs routes: add [[semantic_routes]] (a name, a "
            "tier and example utterances) to the catalog",
            details=[{"loc": ["body", "strategy"], "message": "the catalog has no semantic routes",
                      "type": "router_unavailable"}],
        )  # fmt: skip
    if strategy == Strategy.learned:
        try:
            learned_router(catalog)
        except RouterUnavailable as exc:
            raise ValidationFailed(
                f"strategy: {exc}",
                details=[{"loc": ["body", "strategy"], "message": str(exc),
                          "type": "router_unavailable"}],
            ) from exc  # fmt: skip


def check_quality_target(value: float) -> float:
    """A quality target is a fraction of the strong model's quality, in (0, 1]."""
    if not (0 < value <= 1) or math.isnan(value):
        raise ValueError(f"quality_target must be within (0, 1], got {value}")
    return value


@dataclass(frozen=True)
class LearnedScore:
    """The learned router's verdict on one prompt, before the route is chosen."""

    score: float
    threshold: float  # strong when score >= threshold (inf: never, -inf: always)
    quality_target: float
    expected_quality: float  # fraction of the all-strong quality the training mix kept
    expected_strong_share: float  # share of strong calls at this cut on the training folds
    # the training folds' cut for that share; ``threshold`` is the tenant's running one
    training_threshold: float | None = None

    @property
    def strong(self) -> bool:
        return self.score >= self.threshold


def score_prompts(
    router: LearnedRouter,
    *,
    vectors: NDArray[np.float32] | Sequence[Sequence[float]],
    prompts: Sequence[str],
    targets: Sequence[float],
    streams: Sequence[Hashable],
) -> list[LearnedScore]:
    """Score each prompt with its precomputed embedding (the cache's) and turn its quality
    target into a cut: the share of strong calls that kept that quality on the training
    folds, cut at the running quantile of its stream's (tenant's) recent scores, in order."""
    if not prompts:
        return []
    scores = router.score(np.asarray(vectors, dtype=np.float64), prompts)
    verdicts = []
    for score, target, key in zip(scores.tolist(), targets, streams, strict=True):
        training, share, kept = router.mix_for_quality(target)
        threshold = router.streams.of(key).route(float(score), share)
        verdicts.append(LearnedScore(float(score), threshold, target, kept, share, training))
    return verdicts
