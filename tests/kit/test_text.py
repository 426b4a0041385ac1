"""``normalise``: the text the cache keys hash, unchanged by the switch from a regex."""

from __future__ import annotations

import re
import sys

from app.kit.text import normalise

_WS = re.compile(r"\s+")


def test_normalise_is_the_regex_collapse_on_every_whitespace_character() -> None:
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if _WS.fullmatch(chr(c))]
    assert {" ", "\u3000", "\x1c"} <= set(spaces)
    for space in spaces:
        text = f"{space}a{space}{space}b\tc {space}"
        assert normalise(text) == _WS.sub(" ", text).strip() == "a b c"
    for text in ("", "   ", "one", " x\n\n y \r\n", "a\u00a0\u2028b"):
        assert normalise(text) == _WS.sub(" ", text).strip()
