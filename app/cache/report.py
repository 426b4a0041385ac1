"""The report of `thrifty eval cache`: the threshold sweep for people, then ``key=value``
lines for scripts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from app.cache.scoring import SWEEP, Figures, Outcome, recall_at_fhr, score


def _line(label: str, figures: Figures) -> str:
    return (
        f"{label:>10}  {figures.precision:9.4f}  {figures.recall:7.4f}  "
        f"{figures.false_hit_rate:14.4f}  {figures.hits:6d}"
    )


def report(
    lookups: list[Outcome],
    *,
    default_threshold: float,
    verifier_name: str,
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Print the sweep and the key=value lines; returns the key=value figures."""
    positives = sum(1 for lookup in lookups if lookup.same)
    say(f"\n{len(lookups)} lookups: {positives} same meaning, {len(lookups) - positives} different")
    header = (
        f"{'threshold':>10}  {'precision':>9}  {'recall':>7}  {'false_hit_rate':>14}  {'hits':>6}"
    )
    for verified, title in ((True, f"verified ({verifier_name})"), (False, "plain cosine")):
        say(f"\n{title}\n{header}")
        for threshold in sorted({*SWEEP, default_threshold}):
            mark = " <- default" if threshold == default_threshold and verified else ""
            say(
                _line(f"{threshold:.2f}", score(lookups, threshold=threshold, verified=verified))
                + mark
            )
    default = score(lookups, threshold=default_threshold, verified=True)
    cosine_default = score(lookups, threshold=default_threshold, verified=False)
    figures = {
        "threshold": default_threshold,
        "cosine_precision": cosine_default.precision,
        "cosine_false_hit_rate": cosine_default.false_hit_rate,
        "pairs": float(len(lookups)),
        "precision": default.precision,
        "recall": default.recall,
        "false_hit_rate": default.false_hit_rate,
        "recall_at_1pct_fhr": recall_at_fhr(lookups, verified=True),
        "cosine_recall_at_1pct_fhr": recall_at_fhr(lookups, verified=False),
    }
    refused = Counter(reason for lookup in lookups for reason in lookup.refused)
    if refused:
        say("\nrefused document candidates, by the check that failed: " + ", ".join(
            f"{check} {count}" for check, count in refused.most_common()))  # fmt: skip
    say(f"\nverifier={verifier_name}")
    for key, value in figures.items():
        say(f"{key}={int(value)}" if key == "pairs" else f"{key}={value:.4f}")
    return figures
