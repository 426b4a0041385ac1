"""Small text helpers: ``normalise`` (the cache's keys and comparisons) and ``estimate_tokens``
(sizing a request before it is routed)."""

from __future__ import annotations


def normalise(text: str) -> str:
    r"""Collapse runs of whitespace so trivially reformatted requests compare equal.

    ``str.split`` splits on the characters ``\s`` matches (``str.isspace``) and drops the ends:
    the same text as ``re.sub(r"\s+", " ", text).strip()``, for less on a document (a cache
    key hashes every job's normalised text)."""
    return " ".join(text.split())


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token for English), never zero."""
    return max(1, len(text) // 4)
