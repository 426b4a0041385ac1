"""`thrifty eval cache` and `thrifty cache train` as a user runs them, on fixtures written
here, against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Tenant
from tests.conftest import ROOT

KEYS = ["pairs", "precision", "recall", "false_hit_rate", "recall_at_1pct_fhr",
        "cosine_recall_at_1pct_fhr"]  # fmt: skip

TOPICS = ["guitar", "piano", "violin", "drums", "flute", "cello", "trumpet", "harp"]


def prompt_pairs() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for topic in TOPICS:
        rows.append(
            {
                "a": f"How can I learn to play the {topic} quickly?",
                "b": f"How do I learn to play the {topic} quickly?",
                "same": True,
            }
        )
        rows.append(
            {
                "a": f"What is the best age to start learning the {topic}?",
                "b": f"What is the worst age to start learning the {topic}?",
                "same": False,
            }
        )
        rows.append(
            {
                "a": f"How much does a good {topic} cost?",
                "b": f"How much does a good {topic} cost in 1990?",
                "score": 1.0,
            }
        )
    return rows  # fmt: skip


def run(*args: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "=" in line and " " not in line]
    return dict(line.split("=", 1) for line in lines)


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_eval_cache_on_prompt_pairs_ends_with_the_figures(
    tmp_path: Path, db: Session, database: str
) -> None:
    pairs = write_jsonl(tmp_path / "pairs.jsonl", prompt_pairs())
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "eval", "cache", "--pairs", str(pairs)],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    tail = done.stdout.strip().splitlines()[-len(KEYS) :]
    assert [line.split("=")[0] for line in tail] == KEYS
    figures = dict(line.split("=") for line in tail)
    assert figures["pairs"] == str(len(TOPICS) * 3)
    for key in KEYS[1:]:
        assert 0.0 <= float(figures[key]) <= 1.0
    # the number and antonym pairs are what the verifier is for
    assert float(figures["false_hit_rate"]) <= 0.25
    assert float(figures["recall"]) >= 0.5
    assert "threshold" in done.stdout
    assert "plain cosine" in done.stdout
    # nothing of the run is left behind
    assert db.scalars(select(Tenant)).all() == []


def test_eval_cache_builds_the_near_duplicate_document_set(tmp_path: Path, database: str) -> None:
    docs = tmp_path / "data" / "docs"
    docs.mkdir(parents=True)
    rows = []
    for i, topic in enumerate(["harbour", "harbour", "school", "school", "rail", "rail"] * 2):
        body = " ".join(
            f"Report {i} on the {topic}: councillor number {i} said the plan for the {topic} "
            f"would cost {i * 7 + 3} million pounds and take {i + 2} years to finish. "
            f"Residents of district {i} asked questions about item {j} of the {topic} plan."
            for j in range(6)
        )
        rows.append({"id": f"bbc-x-{i}", "category": topic, "title": f"{topic} plan {i}",
                     "text": body})  # fmt: skip
    write_jsonl(docs / "bbc_news_dev.jsonl", rows)
    figures = run("eval", "cache", "--documents", "--data-dir", str(tmp_path / "data"))
    # 6 stored articles x (4 edited copies + 1 copy with figures changed), and 6 other
    # articles on the same topics; the renumbered copies must miss (no false hit)
    assert figures["pairs"] == "36"
    assert float(figures["false_hit_rate"]) == 0.0
    assert float(figures["recall"]) >= 0.9


def test_cache_train_writes_a_verifier_that_eval_can_use(tmp_path: Path, database: str) -> None:
    rows = prompt_pairs() * 6
    pairs = write_jsonl(tmp_path / "train.jsonl", [
        {**row, "a": f"{row['a']} ({n})", "b": f"{row['b']} ({n})"} for n, row in enumerate(rows)
    ])  # fmt: skip
    out = tmp_path / "verifier"
    figures = run("cache", "train", "--pairs", str(pairs), "--out", str(out), "--holdout", "0.3")
    meta = json.loads((out / "thrifty_verifier.json").read_text())
    assert 0.0 <= meta["cut"] <= 1.0
    assert (out / "heldout.jsonl").exists()
    assert {"cosine_recall_at_1pct_fhr", "trained_recall_at_1pct_fhr"} <= set(figures)
    again = run("eval", "cache", "--pairs", str(out / "heldout.jsonl"), "--verifier", str(out))
    assert int(again["pairs"]) > 0


@pytest.mark.parametrize("args", [["eval", "cache"], ["eval", "cache", "--pairs", "/nope.jsonl"]])
def test_eval_cache_refuses_missing_input(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=dict(os.environ),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode != 0
