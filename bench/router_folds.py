"""The learned router on held-out folds of its training file, beside random and the domain
prior: a hash-chosen quarter-and-more of the prompts never tuned on (``lockbox``), and
leave-domains-out folds that emulate a domain the training data lacks (as GSM8K is).

    python -m bench.router_folds [--outcomes FILE] [--embeddings FILE.npy]

``--embeddings`` caches the prompts' embeddings (computed with the process's embedder when
the file is missing). Prints one table per fold and ends with the lockbox's key=value lines.
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.config import PROJECT_ROOT
from app.routing.calibration import replay
from app.routing.curves import bootstrap, curve
from app.routing.learned import META_NAMES, Components, Params, fit_components
from app.routing.outcomes import Outcome, read_outcomes
from app.routing.training import Fitted, domain_out_meta, labels_of

GROUPS = {
    "maths/science out": ["elementary_mathematics", "college_mathematics",
        "high_school_statistics", "abstract_algebra", "high_school_physics", "college_physics",
        "conceptual_physics", "high_school_chemistry", "college_chemistry", "econometrics",
        "machine_learning"],
    "law out": ["professional_law", "jurisprudence", "international_law"],
    "ethics/psychology out": ["moral_scenarios", "moral_disputes", "philosophy", "sociology",
        "high_school_psychology", "professional_psychology"],
    "medicine/biology out": ["anatomy", "clinical_knowledge", "college_medicine",
        "professional_medicine", "medical_genetics", "nutrition", "virology", "human_aging",
        "college_biology", "high_school_biology"],
    "history/politics out": ["high_school_european_history", "high_school_us_history",
        "high_school_world_history", "prehistory", "us_foreign_policy", "security_studies",
        "high_school_government_and_politics"],
}  # fmt: skip
COLUMNS = Params().columns
VARIANTS = {  # name: (combiner columns, prior shrunk by confidence, domain-out rows)
    "learned (old default)": (COLUMNS, False, False),
    "learned, prior shrunk": (COLUMNS, True, False),
    "learned, +domain-out rows": (COLUMNS, False, True),
    "learned, every meta-feature": ((), False, False),
    "kNN+ridge+prior only": (("knn_gain", "knn_weak", "knn_strong", "ridge_gain",
        "prior_gain", "prior_weak", "prior_strong"), False, False),
}  # fmt: skip
DEFAULT = next(name for name, (columns, shrink, rows) in VARIANTS.items()
               if (columns, shrink, rows) == (COLUMNS, Params().prior_shrink,
                                              Params().domain_out_rows))  # fmt: skip


def _embeddings(outcomes: list[Outcome], cache: Path | None) -> np.ndarray:
    if cache is not None and cache.exists():
        return np.load(cache).astype(np.float64)
    from app.embeddings.service import get_embedder
    from app.kit.text import normalise

    vectors = get_embedder().embed([normalise(o.prompt) for o in outcomes])
    if cache is not None:
        np.save(cache, vectors)
    return vectors.astype(np.float64)


def _shares(scores: np.ndarray, oof: np.ndarray, domains: list[str]) -> tuple[float, ...]:
    """Realised share of strong calls at a 0.5 target: the fixed training cut, then the
    service's running cut over the held-out prompts shuffled (seed 0) and sorted by domain
    (the worst drift: one unseen domain after another)."""
    fixed = float(np.mean(scores >= np.quantile(oof, 0.5, method="higher")))
    shuffled = np.random.default_rng(0).permutation(len(scores))
    by_domain = np.argsort(np.array(domains), kind="stable")
    reference = np.sort(oof)
    streamed = [float(np.mean(replay(reference, scores[o].tolist(), 0.5)))
                for o in (shuffled, by_domain)]  # fmt: skip
    return (fixed, *streamed)


def _line(name: str, scores: np.ndarray, weak: np.ndarray, strong: np.ndarray,
          shares: tuple[float, ...] | None) -> str:  # fmt: skip
    c = curve(scores, weak, strong)
    err = bootstrap(scores, weak, strong, rounds=100)
    share = "   ".join(f"{x:.2f}" for x in shares) if shares is not None else "  - "
    share95 = c.share_at_quality_fraction(0.95)
    return (f"  {name:<30} {c.apgr():.3f} ± {err['apgr_se']:.3f}   "
            f"{share95:.3f} ± {err['share95_se']:.3f}   {share}")  # fmt: skip


def fold(name: str, outcomes: list[Outcome], emb: np.ndarray, held: np.ndarray) -> dict[str, float]:
    train_idx, test_idx = np.flatnonzero(~held), np.flatnonzero(held)
    train = [outcomes[i] for i in train_idx]
    labels = labels_of(train)
    params = Params()
    domains = [o.domain for o in train]
    prompts = [o.prompt for o in train]
    test_prompts = [outcomes[i].prompt for i in test_idx]
    test_domains = [outcomes[i].domain or "" for i in test_idx]
    # the components are fitted once; shrinking the prior only changes how they are read
    metas, test_metas, parts, names = _metas(emb[train_idx], labels, prompts, domains,
                                             emb[test_idx], test_prompts, params)  # fmt: skip
    domain_out = domain_out_meta(emb[train_idx], labels, prompts, domains, params)
    test_meta = test_metas[False]
    test_labels = labels_of([outcomes[i] for i in test_idx])
    weak, strong = test_labels[:, 1] > 0, test_labels[:, 2] > 0
    print(f"{name}: {len(train_idx)} prompts to train, {len(test_idx)} held out")
    print(f"  {'strategy':<30} {'APGR':^13}   {'share@95%q':^13}   "
          "share at a 0.5 target: fixed cut / running cut, shuffled / by domain")  # fmt: skip
    rng = np.random.default_rng(0)
    print(_line("random", rng.random(len(test_idx)), weak, strong, None))
    table = {d: labels[[o.domain == d for o in train], 0].mean() for d in set(domains)}
    prior = np.array([table.get(outcomes[i].domain, 0.0) for i in test_idx])
    print(_line("domain prior (the labels)", prior, weak, strong, None))
    print(_line("predict weak failure (kNN)", -test_meta[:, 1], weak, strong, None))
    result: dict[str, float] = {}
    for variant, (columns, shrink, rows) in VARIANTS.items():
        chosen = Params(columns=columns, prior_shrink=shrink, domain_out_rows=rows)
        fitted = Fitted(parts, names, metas[shrink], labels, chosen, domain_out if rows else None)
        z = (test_metas[shrink] - fitted.mean) / fitted.scale
        scores = z @ fitted.coef + fitted.intercept
        shares = _shares(scores, fitted.oof_scores, test_domains)
        print(_line(variant, scores, weak, strong, shares))
        if variant == DEFAULT:
            c = curve(scores, weak, strong)
            result = {"prompts": float(len(test_idx)), "weak_quality": c.weak_quality,
                      "strong_quality": c.strong_quality, "apgr": c.apgr(),
                      "strong_share_at_95pct_quality": c.share_at_quality_fraction(0.95),
                      "cpt95": c.cpt(0.95),
                      "realised_share": shares[1]}  # fmt: skip
    return result


Metas = dict[bool, np.ndarray]


def _metas(emb: np.ndarray, labels: np.ndarray, prompts: list[str], domains: list[str | None],
           test_emb: np.ndarray, test_prompts: list[str], params: Params
           ) -> tuple[Metas, Metas, Components, list[str]]:  # fmt: skip
    """Out-of-fold training meta-features and held-out ones, without and with the prior
    shrunk (``training.out_of_fold_meta``'s folds, each fitted once)."""
    n = len(prompts)
    order = np.random.default_rng(0).permutation(n)
    metas = {flag: np.zeros((n, len(META_NAMES))) for flag in (False, True)}
    for k in range(params.folds):
        held = order[k :: params.folds]
        kept = np.setdiff1d(order, held)
        parts, _ = fit_components(emb[kept], labels[kept], [domains[i] for i in kept], params)
        for flag in (False, True):
            metas[flag][held] = replace(parts, prior_shrink=flag).meta(
                emb[held], [prompts[i] for i in held])  # fmt: skip
    parts, names = fit_components(emb, labels, domains, params)
    tests = {flag: replace(parts, prior_shrink=flag).meta(test_emb, test_prompts)
             for flag in (False, True)}  # fmt: skip
    return metas, tests, parts, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = PROJECT_ROOT.parent / "shared" / "data" / "routing" / "routellm_mmlu_dev.jsonl"
    parser.add_argument("--outcomes", type=Path, default=default)
    parser.add_argument("--embeddings", type=Path, default=None)
    args = parser.parse_args()
    outcomes = read_outcomes(args.outcomes)
    emb = _embeddings(outcomes, args.embeddings)
    # a fixed split, not a security use of the hash
    digests = [hashlib.sha1(o.prompt.encode(), usedforsecurity=False) for o in outcomes]
    hashed = np.array([int(d.hexdigest(), 16) % 1000 for d in digests])
    lockbox = fold("lockbox (30% by prompt hash)", outcomes, emb, hashed < 300)
    domains = np.array([o.domain or "" for o in outcomes])
    for name, group in GROUPS.items():
        fold(name, outcomes, emb, np.isin(domains, group))
    for key, value in lockbox.items():
        print(f"{key}={int(value)}" if key == "prompts" else f"{key}={value:.4f}")


if __name__ == "__main__":
    main()
