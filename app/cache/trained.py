"""A short-prompt verifier trained on labelled pairs: a cross-encoder fine-tuned from the
bundled all-MiniLM-L6-v2 weights (``thrifty cache train --pairs FILE``).

A cross-encoder reads both prompts together, so it sees what an embedding of each alone
averages away (which entity, which number, which direction). It runs only on the few
candidates the vector search returns, so its cost is a handful of small forward passes per
lookup. Its decision cut is calibrated on pairs held out from training for a target
false-hit rate and saved beside the weights.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

META_FILE = "thrifty_verifier.json"
MAX_TOKENS = 64


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool


class TrainedVerifier:
    """Loads a directory written by :func:`train`; scores (request, cached request) pairs."""

    def __init__(self, model: Any, tokenizer: Any, *, cut: float, threshold: float) -> None:
        self.name = "trained"
        self._model = model
        self._tokenizer = tokenizer
        self.cut = cut
        # The cosine gate the verifier was calibrated with (THRIFTY_CACHE_PROMPT_THRESHOLD).
        self.threshold = threshold
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> TrainedVerifier:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        meta = json.loads((path / META_FILE).read_text())
        model = AutoModelForSequenceClassification.from_pretrained(str(path))
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        return cls(model, tokenizer, cut=float(meta["cut"]), threshold=float(meta["threshold"]))

    def scores(self, pairs: list[tuple[str, str]], *, batch_size: int = 64) -> list[float]:
        """Probability that each pair asks the same thing (symmetric: both orders averaged)."""
        import torch

        if not pairs:
            return []
        out: list[float] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start : start + batch_size]
                both = chunk + [(b, a) for a, b in chunk]
                encoded = self._tokenizer(
                    [a for a, _ in both],
                    [b for _, b in both],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                logits = self._model(**encoded).logits.squeeze(-1)
                probs = torch.sigmoid(logits).numpy()
                half = len(chunk)
                out.extend(((probs[:half] + probs[half:]) / 2).tolist())
        return [float(p) for p in out]

    def accepts(self, pairs: list[tuple[str, str]]) -> list[bool]:
        return [p >= self.cut for p in self.scores(pairs)]


def split(pairs: list[Pair], *, holdout: float, seed: int = 13) -> tuple[list[Pair], list[Pair]]:
    """A deterministic split by a hash of the first text; held-out pairs that share a text
    with a training pair are dropped, so nothing scored was seen in training."""
    import zlib

    def key(text: str) -> str:
        return " ".join(text.lower().split())

    def bucket(text: str) -> float:
        return (zlib.crc32(f"{seed}:{key(text)}".encode()) % 10_000) / 10_000

    train = [p for p in pairs if bucket(p.a) >= holdout]
    seen = {key(p.a) for p in train} | {key(p.b) for p in train}
    test = [
        p for p in pairs if bucket(p.a) < holdout and key(p.a) not in seen and key(p.b) not in seen
    ]
    return train, test


def calibrate_cut(scores: list[float], labels: list[bool], *, target_fhr: float) -> float:
    """The smallest cut whose false-hit rate on these pairs is at most ``target_fhr``."""
    negatives = sorted((s for s, y in zip(scores, labels, strict=True) if not y), reverse=True)
    if not negatives:
        return 0.5
    allowed = int(np.floor(target_fhr * len(negatives)))
    if allowed >= len(negatives):
        return 0.0
    return float(np.nextafter(negatives[allowed], 1.0))


def train(
    pairs: list[Pair],
    *,
    out: Path,
    base_model: Path,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 4e-5,
    calibration: list[Pair],
    calibration_similarity: list[float],
    threshold: float,
    target_fhr: float = 0.005,
    say: Callable[[str], None] = print,
    seed: int = 13,
) -> TrainedVerifier:
    """Fine-tune a cross-encoder from ``base_model`` on ``pairs``; calibrate its cut on
    ``calibration`` (pairs not trained on) so that, behind the cosine gate ``threshold``, at
    most ``target_fhr`` of different-meaning pairs pass; save everything under ``out``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    model = AutoModelForSequenceClassification.from_pretrained(str(base_model), num_labels=1)
    # The word embeddings stay frozen: they are most of the weights, and updating them buys
    # little on a few thousand pairs while costing most of the optimiser's time on a CPU.
    for parameter in model.base_model.embeddings.word_embeddings.parameters():
        parameter.requires_grad = False
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=0.01)
    # Each pair once per epoch, in a random order of its two texts (scoring averages both).
    examples = [(p.a, p.b, p.same) if rng.random() < 0.5 else (p.b, p.a, p.same) for p in pairs]
    steps = epochs * ((len(examples) + batch_size - 1) // batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: min(1.0, (step + 1) / max(1, steps // 10)) * max(0.0, 1 - step / steps),
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    step = 0
    for epoch in range(epochs):
        rng.shuffle(examples)
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            encoded = tokenizer(
                [a for a, _, _ in batch],
                [b for _, b, _ in batch],
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            labels = torch.tensor([1.0 if y else 0.0 for _, _, y in batch])
            loss = loss_fn(model(**encoded).logits.squeeze(-1), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimiser.step()
            scheduler.step()
            optimiser.zero_grad()
            step += 1
            if step % 25 == 0 or step == steps:
                say(f"epoch {epoch + 1} step {step}/{steps} loss {loss.item():.4f}")
    model.eval()
    verifier = TrainedVerifier(model, tokenizer, cut=0.5, threshold=threshold)
    gated = [
        (p, s) for p, s in zip(calibration, calibration_similarity, strict=True) if s >= threshold
    ]
    negatives = sum(1 for p in calibration if not p.same)
    scores = verifier.scores([(p.a, p.b) for p, _ in gated])
    # FHR is over all different-meaning pairs; those under the gate never reach the verifier.
    allowed_fhr = target_fhr * negatives / max(1, sum(1 for p, _ in gated if not p.same))
    verifier.cut = calibrate_cut(scores, [p.same for p, _ in gated], target_fhr=allowed_fhr)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    (out / META_FILE).write_text(
        json.dumps(
            {
                "cut": verifier.cut,
                "threshold": threshold,
                "target_fhr": target_fhr,
                "trained_pairs": len(pairs),
                "calibration_pairs": len(calibration),
                "base_model": "all-MiniLM-L6-v2",
            },
            indent=2,
        )
    )
    return verifier
