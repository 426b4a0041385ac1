"""The second check a semantic candidate must pass: the rules of ``app.cache.verify`` for
documents, and for short prompts the configured verifier (the rules, or a trained one)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from app.cache import verify
from app.cache.keys import DOCUMENT
from app.config import get_settings
from app.models import CacheEntry


class PromptVerifier(Protocol):
    name: str

    def accepts(self, pairs: list[tuple[str, str]]) -> list[bool]:
        """For each (request, cached request): is it the same question?"""
        ...


class RuleVerifier:
    """Numbers, negation and names must agree (``app.cache.verify.same_prompt``)."""

    name = "rules"

    def accepts(self, pairs: list[tuple[str, str]]) -> list[bool]:
        return [verify.same_prompt(a, b) for a, b in pairs]


_verifier_lock = threading.Lock()
_verifiers: dict[str, PromptVerifier] = {}


def prompt_verifier() -> PromptVerifier:
    """The configured short-prompt verifier, loaded once per process."""
    path = get_settings().cache_verifier_path
    key = str(path) if path else "rules"
    with _verifier_lock:
        if key not in _verifiers:
            if path is None:
                _verifiers[key] = RuleVerifier()
            else:
                from app.cache.trained import TrainedVerifier

                _verifiers[key] = TrainedVerifier.load(path)
        return _verifiers[key]


@dataclass(frozen=True)
class Candidate:
    entry: CacheEntry
    similarity: float


def verified(
    *, kind: str, text: str, candidates: list[Candidate], verifier: PromptVerifier
) -> list[Candidate]:
    """The candidates that pass the second check, best first."""
    if kind == DOCUMENT:
        return [
            c for c in candidates if verify.same_document(c.entry.request_text or "", text).same
        ]
    accepted = verifier.accepts([(text, c.entry.request_text or "") for c in candidates])
    return [c for c, ok in zip(candidates, accepted, strict=True) if ok]
