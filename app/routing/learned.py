"""The learned router: scores a prompt by the gain a stronger model is expected to bring
(strong right minus weak right), from outcome data.

The score is a ridge regression over a few meta-features of the prompt, each of them fitted
on the training outcomes: the mean gain, weak and strong correctness of its nearest
training prompts (cosine over the cache's embedder), a ridge regression of the gain on the
embedding, a soft per-domain prior (a domain classifier over the embedding times each
domain's smoothed gain) and cheap text features (``features.py``). The meta-features of the
training prompts are computed out of fold, so the combiner and the thresholds see what a new
prompt looks like; the thresholds (a target share of strong calls, or a quality target) are
quantiles of those out-of-fold scores.

A trained router is a directory: ``router.json`` (what it is, the embedder it needs, its
training figures) and ``router.npz`` (arrays only; loaded without pickle).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from app.routing.calibration import StreamCuts
from app.routing.curves import curve
from app.routing.features import NAMES as FEATURE_NAMES
from app.routing.features import feature_matrix

Array = NDArray[np.float64]
FORMAT = 1
KIND = "knn+ridge+domain-prior stack, gain"


class TextEmbedder(Protocol):
    """What the router needs of an embedder (the cache's; handed in by the caller)."""

    name: str

    def embed(self, texts: list[str]) -> NDArray[np.float32]: ...


class RouterLoadError(ValueError):
    """A router directory is missing, unreadable or not a router this code can load."""


@dataclass(frozen=True)
class Params:
    neighbours: int = 64
    ridge_alpha: float = 10.0
    combiner_alpha: float = 10.0
    domain_c: float = 1.0
    prior_strength: float = 5.0
    folds: int = 5
    # The meta-features the combiner reads (the others get weight 0); chosen on
    # leave-domains-out folds (docs/routing.md): the soft domain prior and the prompt's
    # length transfer to unseen domains better than the kNN and ridge terms, which add
    # nothing on held-out prompts of the training domains. Data without domains uses
    # NO_DOMAIN_COLUMNS.
    columns: tuple[str, ...] = ("prior_gain", "log_chars", "log_question_chars")
    # Shrink the soft domain prior toward the overall rates by the domain classifier's
    # confidence (its largest probability), so a prompt of a domain the training data
    # lacks is not scored by a wrong domain's rates (docs/routing.md).
    prior_shrink: bool = False
    # Fit the combiner on domain-left-out meta-features too (training.domain_out_meta).
    domain_out_rows: bool = True


def knn_stats(train: Array, labels: Array, queries: Array, k: int) -> Array:
    """Mean labels (gain, weak, strong) of each query's ``k`` nearest training rows and the
    mean similarity to them."""
    k = min(k, len(train))
    sims = queries @ train.T
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    near = np.take_along_axis(sims, idx, 1)
    stats: Array = np.c_[labels[idx].mean(axis=1), near.mean(axis=1)]
    return stats


@dataclass
class Components:
    """The fitted parts that turn an embedding and a prompt into meta-features."""

    embeddings: Array
    labels: Array  # gain, weak, strong of each training prompt
    ridge_coef: Array
    ridge_intercept: float
    domain_coef: Array  # (domains, dims); empty when the data names no domains
    domain_intercept: Array
    domain_table: Array  # (domains, 3): smoothed gain, weak, strong per domain
    neighbours: int
    prior_shrink: bool = False

    def meta(self, embeddings: Array, prompts: Sequence[str]) -> Array:
        knn = knn_stats(self.embeddings, self.labels, embeddings, self.neighbours)
        ridge = embeddings @ self.ridge_coef + self.ridge_intercept
        if len(self.domain_table):
            logits = embeddings @ self.domain_coef.T + self.domain_intercept
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            prior = probs @ self.domain_table
            if self.prior_shrink:
                overall = self.labels.mean(axis=0)
                prior = overall + probs.max(axis=1, keepdims=True) * (prior - overall)
        else:
            prior = np.zeros((len(embeddings), 3))
        meta: Array = np.c_[knn, ridge, prior, feature_matrix(list(prompts))]
        return meta


NO_DOMAIN_COLUMNS = ("knn_gain", "ridge_gain", "log_chars", "log_question_chars")
META_NAMES = (
    "knn_gain",
    "knn_weak",
    "knn_strong",
    "knn_similarity",
    "ridge_gain",
    "prior_gain",
    "prior_weak",
    "prior_strong",
    *FEATURE_NAMES,
)


def fit_components(
    embeddings: Array, labels: Array, domains: Sequence[str | None], params: Params
) -> tuple[Components, list[str]]:
    from sklearn.linear_model import LogisticRegression, Ridge

    ridge = Ridge(alpha=params.ridge_alpha).fit(embeddings, labels[:, 0])
    named = [d for d in domains if d is not None]
    names = sorted(set(named))
    dims = embeddings.shape[1]
    coef, intercept, table = np.zeros((0, dims)), np.zeros(0), np.zeros((0, 3))
    if len(names) >= 2 and len(named) == len(domains):
        index = {d: i for i, d in enumerate(names)}
        ids = np.array([index[d] for d in named if d is not None])
        clf = LogisticRegression(C=params.domain_c, max_iter=300).fit(embeddings, ids)
        coef = np.zeros((len(names), dims))
        intercept = np.full(len(names), -1e9)
        coef[clf.classes_] = clf.coef_ if len(names) > 2 else np.r_[-clf.coef_, clf.coef_]
        intercept[clf.classes_] = (
            clf.intercept_ if len(names) > 2 else np.r_[-clf.intercept_, clf.intercept_]
        )
        overall = labels.mean(axis=0)
        table = np.zeros((len(names), 3))
        for i in range(len(names)):
            rows = labels[ids == i]
            table[i] = (rows.sum(axis=0) + params.prior_strength * overall) / (
                len(rows) + params.prior_strength
            )
    else:
        names = []
    parts = Components(
        embeddings=embeddings,
        labels=labels,
        ridge_coef=np.asarray(ridge.coef_, dtype=np.float64),
        ridge_intercept=float(ridge.intercept_),
        domain_coef=coef,
        domain_intercept=intercept,
        domain_table=table,
        neighbours=params.neighbours,
        prior_shrink=params.prior_shrink,
    )
    return parts, names


class LearnedRouter:
    """A trained router, loaded once per process (``load_router`` caches it by path)."""

    def __init__(self, manifest: dict[str, Any], arrays: dict[str, Array]) -> None:
        self.manifest = manifest
        self.embedder_name: str = manifest["embedder"]
        self.kind: str = manifest["kind"]
        self.trained_prompts: int = int(manifest["prompts"])
        self.domains: list[str] = list(manifest["domains"])
        self.parts = Components(
            embeddings=arrays["embeddings"].astype(np.float64),
            labels=arrays["labels"],
            ridge_coef=arrays["ridge_coef"],
            ridge_intercept=float(manifest["ridge_intercept"]),
            domain_coef=arrays["domain_coef"],
            domain_intercept=arrays["domain_intercept"],
            domain_table=arrays["domain_table"],
            neighbours=int(manifest["params"]["neighbours"]),
            # routers trained before the option existed did not shrink
            prior_shrink=bool(manifest["params"].get("prior_shrink", False)),
        )
        self.mean = arrays["meta_mean"]
        self.scale = arrays["meta_scale"]
        self.coef = arrays["combiner_coef"]
        self.intercept = float(manifest["combiner_intercept"])
        # out-of-fold scores of the training prompts: the thresholds' reference
        self.reference = np.sort(arrays["oof_scores"])
        self._oof = arrays["oof_scores"]
        self._mixes: dict[float, tuple[float, float, float]] = {}
        # per-tenant cuts calibrated on the traffic this process routes (calibration.py)
        self.streams = StreamCuts(self.reference)

    def score(self, embeddings: Array, prompts: Sequence[str]) -> Array:
        """Expected gain of the strong model for each prompt (higher: send to strong)."""
        meta = self.parts.meta(np.asarray(embeddings, dtype=np.float64), prompts)
        return np.asarray(((meta - self.mean) / self.scale) @ self.coef + self.intercept)

    def score_prompts(self, prompts: Sequence[str], embedder: TextEmbedder) -> Array:
        from app.kit.text import normalise

        if embedder.name != self.embedder_name:
            raise RouterLoadError(
                f"the router was trained with embedder {self.embedder_name}; "
                f"this process has {embedder.name}"
            )
        vectors = embedder.embed([normalise(p) for p in prompts])
        return self.score(vectors.astype(np.float64), prompts)

    def threshold_for_share(self, share: float) -> float:
        """The score cut that sent ``share`` of the training prompts to strong."""
        if share <= 0:
            return float("inf")
        if share >= 1:
            return float("-inf")
        return float(np.quantile(self.reference, 1 - share, method="higher"))

    def threshold_for_quality(self, target: float) -> tuple[float, float]:
        """The cut whose training mix keeps ``target`` of the all-strong quality, and the
        share of strong calls it took there."""
        threshold, share, _ = self.mix_for_quality(target)
        return threshold, share

    def mix_for_quality(self, target: float) -> tuple[float, float, float]:
        """``threshold_for_quality`` and the fraction of the all-strong quality that mix
        kept on the training folds (``target`` or more). Computed once per target."""
        if target not in self._mixes:
            weak = self.parts.labels[:, 1] > 0
            strong = self.parts.labels[:, 2] > 0
            reference = curve(self._oof, weak, strong)
            share = reference.share_at_quality_fraction(target)
            quality = float(np.interp(share, reference.shares, reference.quality))
            kept = quality / reference.strong_quality if reference.strong_quality else 1.0
            self._mixes[target] = (self.threshold_for_share(share), share, kept)
        return self._mixes[target]

    def domain_prior(self, domains: Sequence[str | None]) -> Array:
        """Each domain's training gain (the per-domain prior baseline); 0 for unknown ones."""
        index = {d: i for i, d in enumerate(self.domains)}
        table = self.parts.domain_table
        return np.array(
            [table[index[d], 0] if d in index else 0.0 for d in domains], dtype=np.float64
        )


def save_router(
    out: Path,
    *,
    manifest: dict[str, Any],
    parts: Components,
    mean: Array,
    scale: Array,
    coef: Array,
    oof_scores: Array,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "router.npz",
        embeddings=parts.embeddings.astype(np.float16),
        labels=parts.labels,
        ridge_coef=parts.ridge_coef,
        domain_coef=parts.domain_coef,
        domain_intercept=parts.domain_intercept,
        domain_table=parts.domain_table,
        meta_mean=mean,
        meta_scale=scale,
        combiner_coef=coef,
        oof_scores=oof_scores,
    )
    (out / "router.json").write_text(json.dumps(manifest, indent=2) + "\n")


_lock = threading.Lock()
_loaded: dict[Path, LearnedRouter] = {}


def load_router(directory: Path) -> LearnedRouter:
    """The router in ``directory``, read once per process."""
    key = directory.resolve()
    with _lock:
        if key not in _loaded:
            _loaded[key] = _read(key)
        return _loaded[key]


def _read(directory: Path) -> LearnedRouter:
    try:
        manifest = json.loads((directory / "router.json").read_text())
        with np.load(directory / "router.npz", allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise RouterLoadError(f"router {directory} does not load: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RouterLoadError(f"router {directory}: not a format-{FORMAT} router")
    try:
        router = LearnedRouter(manifest, arrays)
    except (KeyError, TypeError) as exc:
        raise RouterLoadError(f"router {directory}: missing {exc}") from exc
    if router.coef.shape != (len(META_NAMES),):
        raise RouterLoadError(f"router {directory}: its combiner does not fit this code")
    return router
