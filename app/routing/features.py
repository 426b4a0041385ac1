"""Cheap text features of a prompt (no model): its length, how numeric and how formal it is.

They carry across domains the embedding has not seen (a maths word problem is long and full
of numbers whatever its topic), which is what the learned router leans on outside its
training domains.
"""

from __future__ import annotations

import math
import re

import numpy as np
from numpy.typing import NDArray

_OPTION = re.compile(r"\n\(?[A-Ea-e][.)]\s*(.*)")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_OPERATOR = re.compile(r"[=+*/^<>%]")
_NEGATED = re.compile(r"\b(NOT|EXCEPT|LEAST|FALSE)\b")
_QUANTITY = re.compile(
    r"\b(calculate|compute|how many|how much|what is the value|find the|total|each|per)\b",
    re.IGNORECASE,
)

NAMES = (
    "log_chars",
    "log_question_chars",
    "log_option_chars",
    "digit_ratio",
    "numbers",
    "operator_ratio",
    "has_currency",
    "negated",
    "quantity_words",
    "sentences",
    "options",
)


def text_features(prompt: str) -> list[float]:
    options = _OPTION.findall(prompt)
    question = _OPTION.split(prompt, maxsplit=1)[0]
    chars = max(1, len(prompt))
    return [
        math.log1p(len(prompt)),
        math.log1p(len(question)),
        math.log1p(sum(len(o) for o in options) / len(options)) if options else 0.0,
        sum(c.isdigit() for c in prompt) / chars,
        math.log1p(len(_NUMBER.findall(question))),
        len(_OPERATOR.findall(prompt)) / chars * 10,
        float("$" in prompt or "€" in prompt or "£" in prompt),
        float(bool(_NEGATED.search(prompt))),
        math.log1p(len(_QUANTITY.findall(question))),
        math.log1p(question.count(". ") + question.count("? ")),
        float(len(options)),
    ]


def feature_matrix(prompts: list[str]) -> NDArray[np.float64]:
    return np.array([text_features(p) for p in prompts], dtype=np.float64).reshape(
        len(prompts), len(NAMES)
    )
