"""Second checks for semantic cache candidates: a near-similar embedding is not enough.

Documents: MiniLM reads only about the first 256 tokens, so two articles on the same story
embed alike. A document candidate must be the *same document*: its word shingles over the full
text must largely agree, the lengths must be close, and the numbers and names in the two texts
must match (an edited copy may add some, but a changed figure or a different person is a
different document).

Short prompts: the embedding similarity must clear the threshold and the prompts must agree
on what a paraphrase cannot change: numbers, negation, and named entities. A model trained by
``thrifty cache train`` can replace these rules (see ``app/cache/trained.py``).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_START = re.compile(r"(?:^|[.!?\"'\u201c\u2018]\s+)([A-Z][a-zA-Z]+)")
_NEGATION = frozenset(
    {"not", "no", "never", "nor", "none", "nothing", "nobody", "neither", "without", "cannot"}
)

# Document thresholds, chosen from `thrifty eval cache --documents` on the companion set
# (docs/cache.md): edited copies score far above them, same-topic articles far below.
SHINGLE = 5
MIN_SHINGLE_JACCARD = 0.5
MIN_LENGTH_RATIO = 0.7
# Names and numbers: one side may add some (a new headline, an added sentence), so names are
# compared by containment (the share of the shorter side's names found in the other); a number
# on each side that the other lacks means a figure was changed.
MIN_NAME_CONTAINMENT = 0.7
MAX_ADDED_NUMBERS = 5


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def names(text: str) -> set[str]:
    """Capitalised words that do not start a sentence: a cheap stand-in for named entities."""
    starts = {m.start(1) for m in _SENTENCE_START.finditer(text)}
    found = set()
    for match in re.finditer(r"\b[A-Z][a-zA-Z]+", text):
        if match.start() not in starts:
            found.add(match.group().lower())
    return found


def shingles(tokens: list[str], size: int = SHINGLE) -> set[int]:
    if len(tokens) < size:
        return {zlib.crc32(" ".join(tokens).encode())}
    return {
        zlib.crc32(" ".join(tokens[i : i + size]).encode()) for i in range(len(tokens) - size + 1)
    }


def jaccard(a: set[int] | set[str], b: set[int] | set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def containment(a: set[str], b: set[str]) -> float:
    if not a or not b:
        return 1.0 if a == b else 0.0
    return len(a & b) / min(len(a), len(b))


@dataclass(frozen=True)
class DocumentCheck:
    same: bool
    shingle_jaccard: float
    length_ratio: float
    name_containment: float
    reason: str


def same_document(a: str, b: str) -> DocumentCheck:
    """Whether ``b`` is ``a`` or a lightly edited copy of it (full text, not the embedding)."""
    words_a, words_b = words(a), words(b)
    length_ratio = min(len(words_a), len(words_b)) / max(len(words_a), len(words_b), 1)
    shingle_j = jaccard(shingles(words_a), shingles(words_b))
    name_c = containment(names(a), names(b))
    nums_a, nums_b = numbers(a), numbers(b)
    only_a, only_b = nums_a - nums_b, nums_b - nums_a
    reason = ""
    if length_ratio < MIN_LENGTH_RATIO:
        reason = f"lengths differ ({length_ratio:.2f})"
    elif shingle_j < MIN_SHINGLE_JACCARD:
        reason = f"text differs (shingle Jaccard {shingle_j:.2f})"
    elif only_a and only_b:
        reason = f"numbers differ ({sorted(only_a)[:3]} vs {sorted(only_b)[:3]})"
    elif len(only_a) + len(only_b) > MAX_ADDED_NUMBERS:
        reason = "too many numbers added"
    elif name_c < MIN_NAME_CONTAINMENT:
        reason = f"names differ (containment {name_c:.2f})"
    return DocumentCheck(not reason, shingle_j, length_ratio, name_c, reason)


def _negated(tokens: list[str]) -> bool:
    return sum(1 for t in tokens if t in _NEGATION or t.endswith("n't")) % 2 == 1


def same_prompt(a: str, b: str) -> bool:
    """The rule verifier for short prompts: numbers, negation and names must agree."""
    if numbers(a) != numbers(b):
        return False
    if _negated(words(a)) != _negated(words(b)):
        return False
    names_a, names_b = names(a), names(b)
    return names_a == names_b or jaccard(names_a, names_b) >= 0.5
