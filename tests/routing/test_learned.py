"""The learned router: the curve figures, outcome files, and `thrifty router train` /
`thrifty eval router` as a user runs them on outcome files written here."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.routing.calibration import StreamCut, StreamCuts, replay
from app.routing.curves import curve
from app.routing.learned import META_NAMES, Params, RouterLoadError, load_router
from app.routing.outcomes import Outcome, OutcomeFileError, read_outcomes
from app.routing.training import domain_out_meta, labels_of, out_of_fold_meta
from tests.conftest import ROOT

KEYS = ["prompts", "weak_quality", "strong_quality", "apgr", "strong_share_at_95pct_quality",
        "cpt95", "cost_reduction_at_95pct_quality", "realised_share"]  # fmt: skip


# --- the curve ------------------------------------------------------------------------------


def test_a_constant_score_is_the_random_router() -> None:
    weak = [True, False, False, True, False, False]
    strong = [True, True, True, False, True, False]

    c = curve(np.zeros(6), weak, strong)

    assert c.apgr() == pytest.approx(0.5)
    assert c.weak_quality == pytest.approx(2 / 6)
    assert c.strong_quality == pytest.approx(4 / 6)


def test_scores_that_follow_the_gain_beat_random_and_the_reverse_loses() -> None:
    weak = [False, False, True, True]
    strong = [True, True, True, False]  # gains 1, 1, 0, -1
    good = curve([3.0, 2.0, 1.0, 0.0], weak, strong)
    bad = curve([0.0, 1.0, 2.0, 3.0], weak, strong)

    assert good.apgr() > 0.5 > bad.apgr()
    # one of four to strong already reaches the all-strong quality
    assert good.share_at_quality_fraction(1.0) == pytest.approx(0.25)
    assert good.cpt(0.95) <= 0.5


# --- the running cut (calibration.py) -------------------------------------------------------


def test_the_running_cut_starts_at_the_training_cut_and_follows_shifted_traffic() -> None:
    training = np.sort(np.random.default_rng(1).normal(0.0, 1.0, 5000))
    stream = StreamCut(training, window=200)
    assert stream.cut(0.5) == pytest.approx(np.quantile(training, 0.5), abs=0.02)
    assert (stream.cut(0), stream.cut(1)) == (float("inf"), float("-inf"))
    # Traffic whose scores sit a whole unit higher (a domain the training data lacks): the
    # training cut would send most of it to strong; the running cut comes back to the share.
    traffic = np.random.default_rng(2).normal(1.0, 1.0, 2000)
    assert np.mean(traffic >= np.quantile(training, 0.5)) > 0.75
    strong = replay(training, traffic.tolist(), 0.5, window=200)
    assert abs(strong[200:].mean() - 0.5) <= 0.05
    assert abs(strong.mean() - 0.5) <= 0.1


def test_each_tenant_has_its_own_running_cut() -> None:
    streams = StreamCuts(np.linspace(0.0, 1.0, 101), window=50)
    for _ in range(50):
        streams.of("busy").route(5.0, 0.5)
    assert streams.of("busy").cut(0.5) == 5.0
    assert streams.of("quiet").cut(0.5) == pytest.approx(0.5, abs=0.02)


def test_the_combiner_also_learns_from_prompts_whose_domain_was_left_out() -> None:
    """With enough domains (two per fold), the combiner is fitted on meta-features computed
    with each prompt's whole domain left out as well (a prompt of an unseen domain gets
    another domain's prior); with fewer, on the out-of-fold ones alone."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(10, 16))
    domains = [f"d{i % 10}" for i in range(300)]
    emb = centres[[i % 10 for i in range(300)]] + 0.3 * rng.normal(size=(300, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    helped = [i % 10 < 5 for i in range(300)]  # strong helps on half of the domains
    outcomes = [Outcome(prompt=f"question {i}", weak_correct=not helped[i] and i % 3 == 0,
                        strong_correct=True, domain=domains[i]) for i in range(300)]  # fmt: skip
    labels = labels_of(outcomes)
    prompts = [o.prompt for o in outcomes]
    left_out = domain_out_meta(emb, labels, prompts, domains, Params())
    assert left_out is not None
    assert left_out.shape == (300, len(META_NAMES))
    assert np.isfinite(left_out).all()
    # a domain the components never saw gets no rate of its own: less spread than in fold
    inside = out_of_fold_meta(emb, labels, prompts, domains, Params())
    prior = META_NAMES.index("prior_gain")
    assert left_out[:, prior].std() < inside[:, prior].std()
    assert (
        domain_out_meta(emb, labels, prompts, [f"d{i % 9}" for i in range(300)], Params()) is None
    )


# --- outcome files --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("{not json", "not JSON"),
        ('{"weak_correct": true, "strong_correct": false}', "'prompt' must be"),
        ('{"prompt": "x", "weak_correct": "yes", "strong_correct": true}', "'weak_correct'"),
        ('{"prompt": "x", "weak_correct": true}', "'strong_correct'"),
        ('["prompt"]', "expected a JSON object"),
    ],
    ids=["not-json", "no-prompt", "not-a-flag", "missing-flag", "not-an-object"],
)
def test_a_malformed_outcome_file_names_the_line(tmp_path: Path, line: str, fragment: str) -> None:
    path = tmp_path / "outcomes.jsonl"
    good = json.dumps({"prompt": "ok", "weak_correct": True, "strong_correct": True})
    path.write_text(f"{good}\n\n{line}\n")

    with pytest.raises(OutcomeFileError, match=fragment) as caught:
        read_outcomes(path)

    assert f"{path}:3" in str(caught.value)


def test_a_router_directory_that_does_not_load_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RouterLoadError, match="does not load"):
        load_router(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "router.json").write_text('{"format": 99}')
    (tmp_path / "bad" / "router.npz").write_bytes(b"")
    with pytest.raises(RouterLoadError):
        load_router(tmp_path / "bad")


# --- train and eval, as a user runs them -----------------------------------------------------

TOPICS = {
    # strong helps on arithmetic word problems, never on capitals (both right or both wrong)
    "arithmetic": [
        "A farmer has {a} sheep and buys {b} more, then sells {c}. How many sheep remain?",
        "A train travels {a} km in {b} hours and then {c} km more. What is its average speed?",
        "Tom saves {a} dollars a week for {b} weeks and spends {c}. How much is left?",
    ],
    "capitals": [
        "What is the capital city of country number {a}?",
        "Name the capital of the region called {a}-{b}.",
        "Which city is the seat of government of province {a}?",
    ],
}


def outcome_lines(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        domain = "arithmetic" if i % 2 else "capitals"
        template = rng.choice(TOPICS[domain])
        prompt = template.format(a=rng.randint(2, 99), b=rng.randint(2, 99), c=rng.randint(2, 9))
        if domain == "arithmetic":
            weak, strong = rng.random() < 0.3, rng.random() < 0.95
        else:
            weak = strong = rng.random() < 0.8
        lines.append(json.dumps({"prompt": prompt, "weak_correct": weak,
                                 "strong_correct": strong, "domain": domain}))  # fmt: skip
    return lines


def thrifty(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def figures(stdout: str) -> dict[str, float]:
    pairs = [line.split("=", 1) for line in stdout.splitlines() if "=" in line and " " not in line]
    return {k: float(v) for k, v in pairs}


def test_train_then_eval_routes_the_prompts_strong_helps_on(tmp_path: Path) -> None:
    train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
    train.write_text("\n".join(outcome_lines(240, seed=1)) + "\n")
    held.write_text("\n".join(outcome_lines(120, seed=2)) + "\n")

    trained = thrifty("router", "train", "--outcomes", str(train), "--out", str(tmp_path / "r"))
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads((tmp_path / "r" / "router.json").read_text())
    # the default embedder (int8) trains it, and eval embeds with the same
    assert manifest["embedder"] == "local:all-MiniLM-L6-v2:int8"

    evaluated = thrifty("eval", "router", "--router", str(tmp_path / "r"),
                        "--outcomes", str(held), "--target-share", "0.5")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    tail = [line.split("=", 1)[0] for line in evaluated.stdout.strip().splitlines()[-len(KEYS) :]]
    assert tail == KEYS
    got = figures(evaluated.stdout)
    assert got["prompts"] == 120
    assert got["apgr"] > 0.65  # the arithmetic half is where the gain is (random: 0.5)
    assert got["strong_share_at_95pct_quality"] < 0.6
    assert abs(got["realised_share"] - 0.5) <= 0.1
    assert 0 < got["cost_reduction_at_95pct_quality"] < 1


def test_eval_router_reports_a_bad_file_and_a_bad_router(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "weak_correct": true, "strong_correct": true}\n{oops\n')
    trained = thrifty("router", "train", "--outcomes", str(bad), "--out", str(tmp_path / "r"))
    assert trained.returncode == 2
    assert f"{bad}:2" in trained.stderr + trained.stdout

    missing = thrifty("eval", "router", "--router", str(tmp_path / "none"), "--outcomes", str(bad))
    assert missing.returncode == 2
