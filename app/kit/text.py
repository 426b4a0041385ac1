"""Small text helpers: ``normalise`` (the cache's keys and comparisons) and ``estimate_tokens``
(sizing a request before it is routed)."""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Collapse runs of whitespace so trivially reformatted requests compare equal."""
    return _WS.sub(" ", text).strip()


def estimate_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token for English), never zero."""
    return max(1, len(text) // 4)
