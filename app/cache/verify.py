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
from difflib import SequenceMatcher

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_START = re.compile(r"(?:^|[.!?\"'\u201c\u2018]\s+)([A-Z][a-zA-Z]+)")
# What a figure can be written as: digits (with thousands separators or a decimal point), a
# month or weekday, or a number word. "2004" -> "2005", "12 March" -> "12 April", "on Thursday"
# -> "on Friday", "three goals" -> "four goals" are all changed figures.
_FIGURE_WORDS = (
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday "
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
    "eighty ninety hundred thousand million billion trillion half quarter dozen"
)
_FIGURE = re.compile(r"\d+(?:[.,]\d+)*|\b(?:" + "|".join(_FIGURE_WORDS.split()) + r")\b", re.I)
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
# A revised story rather than a copy: names gone from one side and new ones on the other
# (a different person quoted, a paragraph swapped for another), as with figures. Two
# versions of one BBC story that way (a quote's source replaced) passed every other check
# in bench.trace; syndicated copies only add names (a dateline, a credit).
MAX_SWAPPED_NAMES = 1
MAX_ADDED_NUMBERS = 12


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def figures(text: str) -> list[str]:
    """The figures of ``text`` in order (digits without separators, words lower-cased)."""
    return [f.replace(",", "").lower() for f in _FIGURE.findall(text)]


@dataclass(frozen=True)
class FigureDiff:
    """How the figures of two texts align: changed in place, or only added/removed."""

    changed: list[tuple[str, str]]
    removed: int
    added: int


def figure_diff(a: list[str], b: list[str]) -> FigureDiff:
    """Align the figure sequences of two texts. An edit that only adds text (a headline, a
    sentence, furniture) adds figures; one that changes a figure replaces it in place."""
    changed: list[tuple[str, str]] = []
    removed = added = 0
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "replace":
            changed.append((" ".join(a[i1:i2]), " ".join(b[j1:j2])))
        elif tag == "delete":
            removed += i2 - i1
        elif tag == "insert":
            added += j2 - j1
    return FigureDiff(changed, removed, added)


def names(text: str) -> set[str]:
    """Capitalised words that do not start a sentence: a cheap stand-in for named entities."""
    starts = {m.start(1) for m in _SENTENCE_START.finditer(text)}
    found = set()
    for match in re.finditer(r"\b[A-Z][a-zA-Z]+", text):
        if match.start() not in starts:
            found.add(match.group().lower())
    return found


_WORD_HASHES: dict[str, int] = {}
_WORD_HASHES_MAX = 500_000
# Odd 64-bit multipliers combining the hashes of a shingle's words (position-dependent).
_SHINGLE_MIX = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5,
     0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x85EBCA77C2B2AE63, 0x9FB21C651E98DF25],
    dtype=np.uint64,
)  # fmt: skip


def _word_hashes(tokens: list[str]) -> npt.NDArray[np.uint64]:
    """CRC-32 of each word (stable across processes), memoised: words repeat."""
    cache = _WORD_HASHES
    if len(cache) > _WORD_HASHES_MAX:
        cache.clear()
    for token in set(tokens).difference(cache):
        cache[token] = zlib.crc32(token.encode())
    return np.array([cache[token] for token in tokens], dtype=np.uint64)


def shingles(tokens: list[str], size: int = SHINGLE) -> set[int]:
    """64-bit hashes of the text's runs of ``size`` words (one hash for a shorter text)."""
    hashes = _word_hashes(tokens)
    if len(tokens) < size:
        return {int(np.bitwise_xor.reduce(hashes * _SHINGLE_MIX[: len(tokens)]))} if tokens else {0}
    count = len(tokens) - size + 1
    with np.errstate(over="ignore"):
        combined = hashes[:count] * _SHINGLE_MIX[0]
        for k in range(1, size):
            combined += hashes[k : k + count] * _SHINGLE_MIX[k]
    return set(combined.view(np.int64).tolist())


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
    """The near-duplicate decision and why: ``failed`` names the first check that failed
    (``length``, ``text``, ``numbers``, ``names``; empty when the documents are the same) and
    ``reason`` says it with the figures."""

    same: bool
    shingle_jaccard: float
    length_ratio: float
    name_containment: float
    reason: str
    failed: str = ""


def same_document(a: str, b: str, *, min_jaccard: float = MIN_SHINGLE_JACCARD) -> DocumentCheck:
    """Whether ``b`` is ``a`` or a lightly edited copy of it (full text, not the embedding).

    Checks in order: lengths, word 5-shingle Jaccard (at least ``min_jaccard``), figures
    (any figure changed in place, or figures removed on one side and added on the other,
    fails; an edit may add or remove a few), names (most of the shorter side's found in the
    other, and not several gone from one side while others appear on the other)."""
    words_a, words_b = words(a), words(b)
    length_ratio = min(len(words_a), len(words_b)) / max(len(words_a), len(words_b), 1)
    shingle_j = jaccard(shingles(words_a), shingles(words_b))
    names_a, names_b = names(a), names(b)
    name_c = containment(names_a, names_b)
    failed, reason = "", ""
    if length_ratio < MIN_LENGTH_RATIO:
        failed, reason = "length", f"lengths differ ({length_ratio:.2f})"
    elif shingle_j < min_jaccard:
        failed, reason = "text", f"text differs (shingle Jaccard {shingle_j:.2f})"
    else:
        diff = figure_diff(figures(a), figures(b))
        if diff.changed:
            shown = ", ".join(f"{x} -> {y}" for x, y in diff.changed[:3])
            failed, reason = "numbers", f"numbers differ ({shown})"
        elif diff.removed and diff.added:
            failed = "numbers"
            reason = f"numbers differ ({diff.removed} removed, {diff.added} added)"
        elif diff.removed + diff.added > MAX_ADDED_NUMBERS:
            failed = "numbers"
            reason = f"numbers differ (too many added or removed: {diff.removed + diff.added})"
        elif name_c < MIN_NAME_CONTAINMENT:
            failed, reason = "names", f"names differ (containment {name_c:.2f})"
        elif min(len(names_a - names_b), len(names_b - names_a)) > MAX_SWAPPED_NAMES:
            failed = "names"
            reason = (
                f"names differ ({len(names_a - names_b)} removed, {len(names_b - names_a)} added)"
            )
    return DocumentCheck(not failed, shingle_j, length_ratio, name_c, reason, failed)


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
