"""`thrifty eval router`: route every prompt of an outcome file with a trained router and
print RouteLLM's figures beside random and the per-domain prior, ending in ``key=value``
lines."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np

from app.catalog.catalog import Catalog, ModelConfig, get_catalog
from app.kit.text import estimate_tokens
from app.routing.calibration import WINDOW, replay
from app.routing.curves import Curve, bootstrap, curve
from app.routing.learned import LearnedRouter, TextEmbedder, load_router
from app.routing.outcomes import Outcome, read_outcomes

SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _pair(
    catalog: Catalog, weak: str | None, strong: str | None
) -> tuple[ModelConfig, ModelConfig]:
    default_weak = catalog.learned.weak_model if catalog.learned else None
    default_strong = catalog.learned.strong_model if catalog.learned else None
    weak, strong = weak or default_weak, strong or default_strong
    if weak is None or strong is None:
        raise ValueError("give --weak-model and --strong-model (the catalog names no pair)")
    for name in (weak, strong):
        if not catalog.has_model(name):
            raise ValueError(
                f"unknown model {name!r}; the catalog has: "
                + ", ".join(sorted(m.name for m in catalog.models))
            )
    return catalog.model(weak), catalog.model(strong)


def _costs(outcomes: list[Outcome], model: ModelConfig, output_tokens: int) -> np.ndarray:
    """Realtime list price of each prompt on ``model`` (input estimated, output assumed)."""
    per_mtok_in, per_mtok_out = float(model.input_per_mtok), float(model.output_per_mtok)
    tokens = np.array([estimate_tokens(o.prompt) for o in outcomes], dtype=np.float64)
    return (tokens * per_mtok_in + output_tokens * per_mtok_out) / 1e6


def cost_reduction(
    scores: np.ndarray, share: float, weak_costs: np.ndarray, strong_costs: np.ndarray
) -> float:
    """1 - cost of sending the top ``share`` of prompts to strong / cost of all-strong."""
    n = len(scores)
    taken = int(np.ceil(share * n - 1e-9))
    order = np.argsort(-scores, kind="stable")
    strong_set = np.zeros(n, dtype=bool)
    strong_set[order[:taken]] = True
    mix = float(np.where(strong_set, strong_costs, weak_costs).sum())
    return 1.0 - mix / float(strong_costs.sum())


def _row(name: str, c: Curve, errors: dict[str, float] | None) -> str:
    apgr = f"{c.apgr():.3f}" + (f" ± {errors['apgr_se']:.3f}" if errors else "")
    share = f"{c.share_at_quality_fraction(0.95):.3f}" + (
        f" ± {errors['share95_se']:.3f}" if errors else ""
    )
    pgrs = " ".join(f"{_pgr_at(c, s):5.2f}" for s in SHARES)
    return f"  {name:<26} {apgr:>15} {share:>15}   {c.cpt(0.5):.3f} {c.cpt(0.8):.3f}  {pgrs}"


def _pgr_at(c: Curve, share: float) -> float:
    return float(np.interp(share, c.shares, c.pgr))


def evaluate_command(
    *,
    router_dir: Path,
    outcomes_path: Path,
    target_share: float,
    weak_model: str | None,
    strong_model: str | None,
    output_tokens: int,
    embedder: TextEmbedder,
    say: Callable[[str], None] = print,
    catalog: Catalog | None = None,
) -> dict[str, float]:
    catalog = catalog or get_catalog()
    weak, strong = _pair(catalog, weak_model, strong_model)
    outcomes = read_outcomes(outcomes_path)
    router: LearnedRouter = load_router(router_dir)
    say(
        f"{len(outcomes)} prompts from {outcomes_path}; router {router_dir} "
        f"({router.embedder_name}, trained on {router.trained_prompts} prompts)"
    )
    scores = router.score_prompts([o.prompt for o in outcomes], embedder)
    weak_ok = [o.weak_correct for o in outcomes]
    strong_ok = [o.strong_correct for o in outcomes]
    learned = curve(scores, weak_ok, strong_ok)
    prior = curve(router.domain_prior([o.domain for o in outcomes]), weak_ok, strong_ok)
    rng = np.random.default_rng(0)
    say(
        f"weak {weak.name}: quality {learned.weak_quality:.4f}; "
        f"strong {strong.name}: quality {learned.strong_quality:.4f}"
    )
    say(
        f"  {'strategy':<26} {'APGR':>15} {'share@95%q':>15}   cpt50 cpt80  PGR at "
        + " ".join(f"{s:5.0%}" for s in SHARES)
    )
    say(_row("random (expected)", curve(np.zeros(len(outcomes)), weak_ok, strong_ok), None))
    say(_row("random (one draw)", curve(rng.random(len(outcomes)), weak_ok, strong_ok), None))
    say(_row("domain prior (training)", prior, None))
    say(_row(f"learned ({router.kind})", learned, bootstrap(scores, weak_ok, strong_ok)))

    share95 = learned.share_at_quality_fraction(0.95)
    weak_costs = _costs(outcomes, weak, output_tokens)
    strong_costs = _costs(outcomes, strong, output_tokens)
    reduction = cost_reduction(scores, share95, weak_costs, strong_costs)
    threshold = router.threshold_for_share(target_share)
    fixed = float(np.mean(scores >= threshold))
    # FILE replayed in its order as one tenant's traffic, through the running cut the
    # service applies (calibration.py: it starts from the training scores).
    realised = float(np.mean(replay(router.reference, scores.tolist(), target_share)))
    say(
        f"cost at 95% quality: {Decimal(str(round(1 - reduction, 4)))} of all-strong "
        f"({output_tokens} answer tokens a prompt, realtime list prices)"
    )
    say(
        f"target share {target_share:g}: the training threshold {threshold:.5f} alone sends "
        f"{fixed:.3f} of these prompts to {strong.name}; the service's running cut "
        f"({WINDOW} recent scores, FILE in its order) sends {realised:.3f}"
    )
    figures = {
        "prompts": float(len(outcomes)),
        "weak_quality": learned.weak_quality,
        "strong_quality": learned.strong_quality,
        "apgr": learned.apgr(),
        "strong_share_at_95pct_quality": share95,
        "cpt95": learned.cpt(0.95),
        "cost_reduction_at_95pct_quality": reduction,
        "realised_share": realised,
    }
    for key, value in figures.items():
        say(f"{key}={int(value)}" if key == "prompts" else f"{key}={value:.4f}")
    return figures
