"""`thrifty router train`: fit the learned router on outcome data and write its directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.routing.curves import curve
from app.routing.learned import (
    FORMAT,
    KIND,
    META_NAMES,
    NO_DOMAIN_COLUMNS,
    Array,
    Components,
    Params,
    TextEmbedder,
    fit_components,
    save_router,
)
from app.routing.outcomes import Outcome, read_outcomes


def labels_of(outcomes: Sequence[Outcome]) -> Array:
    return np.array(
        [[o.gain, o.weak_correct, o.strong_correct] for o in outcomes], dtype=np.float64
    )


def out_of_fold_meta(
    embeddings: Array,
    labels: Array,
    prompts: Sequence[str],
    domains: Sequence[str | None],
    params: Params,
) -> Array:
    """Each prompt's meta-features from components fitted without its fold."""
    n = len(prompts)
    order = np.random.default_rng(0).permutation(n)
    meta = np.zeros((n, len(META_NAMES)))
    for fold in range(params.folds):
        held = order[fold :: params.folds]
        kept = np.setdiff1d(order, held)
        parts, _ = fit_components(
            embeddings[kept], labels[kept], [domains[i] for i in kept.tolist()], params
        )
        meta[held] = parts.meta(embeddings[held], [prompts[i] for i in held.tolist()])
    return meta


def domain_out_meta(
    embeddings: Array,
    labels: Array,
    prompts: Sequence[str],
    domains: Sequence[str | None],
    params: Params,
) -> Array | None:
    """Each prompt's meta-features from components fitted without its whole domain (the
    domains dealt into ``params.folds`` groups): what a prompt of a domain the training data
    lacks looks like. None when the data names too few domains for that."""
    names = sorted({d for d in domains if d is not None})
    if len(names) < 2 * params.folds or any(d is None for d in domains):
        return None
    order = np.random.default_rng(1).permutation(len(names))
    group = {d: int(order[i]) % params.folds for i, d in enumerate(names)}
    ids = np.array([group[d] for d in domains if d is not None])
    meta = np.zeros((len(prompts), len(META_NAMES)))
    for fold in range(params.folds):
        held, kept = np.flatnonzero(ids == fold), np.flatnonzero(ids != fold)
        parts, _ = fit_components(
            embeddings[kept], labels[kept], [domains[i] for i in kept.tolist()], params
        )
        meta[held] = parts.meta(embeddings[held], [prompts[i] for i in held.tolist()])
    return meta


class Fitted:
    """A fitted router before it is written: its parts, combiner and out-of-fold scores.

    ``domain_out``: the prompts' meta-features with their whole domain left out, if any; the
    combiner is then fitted on those rows as well as the out-of-fold ones, so it weighs the
    domain prior as it behaves on prompts of known *and* unseen domains. The out-of-fold
    scores (the thresholds' reference) are of the out-of-fold rows alone."""

    def __init__(
        self,
        parts: Components,
        domains: list[str],
        meta: Array,
        labels: Array,
        params: Params,
        domain_out: Array | None = None,
    ) -> None:
        from sklearn.linear_model import Ridge

        self.parts, self.domains = parts, domains
        rows, gains = meta, labels[:, 0]
        if domain_out is not None:
            rows, gains = np.r_[meta, domain_out], np.r_[gains, gains]
        self.mean = rows.mean(axis=0)
        self.scale = rows.std(axis=0) + 1e-9
        columns = params.columns if domains else NO_DOMAIN_COLUMNS
        used = np.array([not columns or n in columns for n in META_NAMES])
        z = (rows - self.mean) / self.scale
        combiner = Ridge(alpha=params.combiner_alpha).fit(z[:, used], gains)
        self.coef = np.zeros(len(META_NAMES))
        self.coef[used] = combiner.coef_
        self.intercept = float(combiner.intercept_)
        self.oof_scores = ((meta - self.mean) / self.scale) @ self.coef + self.intercept


def fit(embeddings: Array, outcomes: Sequence[Outcome], params: Params | None = None) -> Fitted:
    params = params or Params()
    if len(outcomes) < 4 * params.folds:
        raise ValueError(f"need at least {4 * params.folds} outcomes to train a router")
    labels = labels_of(outcomes)
    prompts = [o.prompt for o in outcomes]
    domains = [o.domain for o in outcomes]
    meta = out_of_fold_meta(embeddings, labels, prompts, domains, params)
    domain_out = (
        domain_out_meta(embeddings, labels, prompts, domains, params)
        if params.domain_out_rows
        else None
    )
    parts, names = fit_components(embeddings, labels, domains, params)
    return Fitted(parts, names, meta, labels, params, domain_out)


def embed_prompts(prompts: Sequence[str], embedder: TextEmbedder) -> tuple[Array, str]:
    from app.kit.text import normalise

    vectors = embedder.embed([normalise(p) for p in prompts])
    return vectors.astype(np.float64), embedder.name


def train_command(
    *,
    outcomes_path: Path,
    out: Path,
    embedder: TextEmbedder,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    outcomes = read_outcomes(outcomes_path)
    params = Params()
    say(f"{len(outcomes)} outcomes from {outcomes_path}; embedding them")
    started = time.monotonic()
    embeddings, embedder_name = embed_prompts([o.prompt for o in outcomes], embedder)
    say(f"embedded with {embedder_name} in {time.monotonic() - started:.0f}s; fitting")
    fitted = fit(embeddings, outcomes, params)
    labels = labels_of(outcomes)
    reference = curve(fitted.oof_scores, labels[:, 1] > 0, labels[:, 2] > 0)
    figures = {
        "prompts": float(len(outcomes)),
        "weak_quality": reference.weak_quality,
        "strong_quality": reference.strong_quality,
        "oof_apgr": reference.apgr(),
        "oof_strong_share_at_95pct_quality": reference.share_at_quality_fraction(0.95),
    }
    manifest = {
        "format": FORMAT,
        "kind": KIND,
        "embedder": embedder_name,
        "prompts": len(outcomes),
        "trained_on": str(outcomes_path),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "domains": fitted.domains,
        "meta_features": list(META_NAMES),
        "params": params.__dict__,
        "ridge_intercept": fitted.parts.ridge_intercept,
        "combiner_intercept": fitted.intercept,
        "figures": figures,
    }
    save_router(
        out,
        manifest=manifest,
        parts=fitted.parts,
        mean=fitted.mean,
        scale=fitted.scale,
        coef=fitted.coef,
        oof_scores=fitted.oof_scores,
    )
    say(
        f"out-of-fold on the training data (combiner in-sample): APGR {figures['oof_apgr']:.3f}, "
        f"strong share at 95% quality {figures['oof_strong_share_at_95pct_quality']:.3f}"
    )
    say(f"router written to {out}")
    for key, value in figures.items():
        say(f"{key}={int(value)}" if key == "prompts" else f"{key}={value:.4f}")
    return figures
