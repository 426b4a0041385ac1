"""Outcome files: one JSON object a line with ``prompt``, ``weak_correct``, ``strong_correct``
and an optional ``domain`` (RouteLLM's routing data, e.g. ``routellm_mmlu_dev.jsonl``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class OutcomeFileError(ValueError):
    """A line of an outcome file is not an outcome; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Outcome:
    prompt: str
    weak_correct: bool
    strong_correct: bool
    domain: str | None = None

    @property
    def gain(self) -> int:
        """What the strong model adds on this prompt: +1, 0 or -1."""
        return int(self.strong_correct) - int(self.weak_correct)


def _outcome(raw: object, where: str) -> Outcome:
    if not isinstance(raw, dict):
        raise OutcomeFileError(f"{where}: expected a JSON object")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise OutcomeFileError(f"{where}: 'prompt' must be a non-empty string")
    flags = {}
    for key in ("weak_correct", "strong_correct"):
        value = raw.get(key)
        # 0/1 are accepted as RouteLLM's own files write them; anything else is an error.
        if isinstance(value, bool) or value in (0, 1):
            flags[key] = bool(value)
        else:
            raise OutcomeFileError(f"{where}: {key!r} must be true or false, got {value!r}")
    domain = raw.get("domain")
    if domain is not None and not isinstance(domain, str):
        raise OutcomeFileError(f"{where}: 'domain' must be a string when given")
    return Outcome(prompt, flags["weak_correct"], flags["strong_correct"], domain)


def read_outcomes(path: Path) -> list[Outcome]:
    """Every outcome of ``path``; blank lines are skipped, a bad line raises naming it."""
    outcomes: list[Outcome] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise OutcomeFileError(f"{where}: not JSON ({exc.msg})") from exc
            outcomes.append(_outcome(raw, where))
    if not outcomes:
        raise OutcomeFileError(f"{path}: no outcomes")
    return outcomes
