"""`thrifty cache train`: fit a short-prompt verifier on labelled pairs and compare it, on
pairs it was not trained on, with plain cosine and the rule verifier."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from app.cache.datasets import read_pairs
from app.cache.scoring import Outcome, recall_at_fhr, score
from app.cache.trained import Pair, split, train
from app.cache.verification import RuleVerifier
from app.config import get_settings
from app.kit.text import normalise

GATE = 0.80  # cosine gate in front of the trained verifier (its candidates)


def _similarities(pairs: list[Pair]) -> list[float]:
    from app.embeddings.service import get_embedder

    embedder = get_embedder()
    a = embedder.embed([normalise(p.a) for p in pairs])
    b = embedder.embed([normalise(p.b) for p in pairs])
    return [float(x) for x in (a * b).sum(axis=1)]


def _lookups(pairs: list[Pair], sims: list[float], accepted: list[bool]) -> list[Outcome]:
    return [
        Outcome(same=p.same, candidates=[(s, True, ok)])
        for p, s, ok in zip(pairs, sims, accepted, strict=True)
    ]


def train_command(
    *,
    pairs_path: Path,
    out: Path,
    holdout: float,
    epochs: int,
    limit: int | None,
    target_fhr: float,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Train on one split of ``pairs_path``, calibrate on a second, report on a third."""
    from app.embeddings.local import bundled_model_path

    labelled = read_pairs(pairs_path)
    pairs = [Pair(p.a, p.b, p.same) for p in labelled]
    rest, test = split(pairs, holdout=holdout)
    fit, calibration = split(rest, holdout=0.15, seed=29)
    if limit is not None:
        fit = fit[:limit]
    if not fit or not test or not calibration:
        raise ValueError("too few pairs to train, calibrate and test")
    say(f"{len(fit)} pairs to train, {len(calibration)} to calibrate, {len(test)} held out")
    started = time.monotonic()
    cal_sims = _similarities(calibration)
    verifier = train(
        fit,
        out=out,
        base_model=bundled_model_path(),
        epochs=epochs,
        calibration=calibration,
        calibration_similarity=cal_sims,
        threshold=GATE,
        target_fhr=target_fhr,
        say=say,
    )
    say(f"trained in {time.monotonic() - started:.0f} s; cut={verifier.cut:.4f} at gate {GATE}")
    with (out / "heldout.jsonl").open("w") as handle:
        for p in test:
            handle.write(json.dumps({"a": p.a, "b": p.b, "same": p.same}) + "\n")

    sims = _similarities(test)
    probs = verifier.scores([(p.a, p.b) for p in test])
    rules = RuleVerifier().accepts([(p.a, p.b) for p in test])
    trained = [p >= verifier.cut for p in probs]
    cosine_lookups = _lookups(test, sims, [True] * len(test))
    rule_lookups = _lookups(test, sims, rules)
    trained_lookups = _lookups(test, sims, trained)
    # The trained verifier's own knob is its probability cut, behind the cosine gate.
    by_probability = [
        Outcome(same=p.same, candidates=[(prob if s >= GATE else -1.0, True, True)])
        for p, s, prob in zip(test, sims, probs, strict=True)
    ]
    say(f"\nheld-out pairs (never trained or calibrated on): {len(test)}")
    say(f"{'technique':<34} {'recall@1%FHR':>12}  {'precision':>9}  {'recall':>7}  {'FHR':>7}")
    default_threshold = get_settings().cache_prompt_threshold
    rows = [
        ("plain cosine", cosine_lookups, False, default_threshold),
        ("cosine + rules (default)", rule_lookups, True, default_threshold),
        (f"cosine>={GATE} + trained verifier", trained_lookups, True, GATE),
    ]
    figures: dict[str, float] = {}
    for name, lookups, verified, threshold in rows:
        at_1 = recall_at_fhr(lookups, verified=verified)
        fig = score(lookups, threshold=threshold, verified=verified)
        say(
            f"{name:<34} {at_1:12.4f}  {fig.precision:9.4f}  {fig.recall:7.4f}  "
            f"{fig.false_hit_rate:7.4f}   (threshold {threshold:.2f})"
        )
        figures[name] = at_1
    trained_sweep = recall_at_fhr(by_probability, verified=False)
    say(f"{'trained verifier, cut swept':<34} {trained_sweep:12.4f}")
    say(
        f"\nUse it: THRIFTY_CACHE_VERIFIER_PATH={out} THRIFTY_CACHE_PROMPT_THRESHOLD={GATE}\n"
        f"Check it through the whole cache path: thrifty eval cache --pairs {out}/heldout.jsonl "
        f"--verifier {out}"
    )
    result = {
        "train_pairs": float(len(fit)),
        "heldout_pairs": float(len(test)),
        "cut": verifier.cut,
        "cosine_recall_at_1pct_fhr": figures["plain cosine"],
        "rules_recall_at_1pct_fhr": figures["cosine + rules (default)"],
        "trained_recall_at_1pct_fhr": figures[f"cosine>={GATE} + trained verifier"],
    }
    for key, value in result.items():
        say(f"{key}={int(value)}" if key.endswith("pairs") else f"{key}={value:.4f}")
    return result
