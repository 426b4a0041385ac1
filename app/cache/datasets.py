"""The labelled pairs `thrifty eval cache` measures the cache on: JSON lines of pairs (``a``,
``b``, same meaning or an STS score), or the near-duplicate document companion set built
from news articles."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.cache import neardup, verify
from app.embeddings.base import Embedder
from app.kit.text import normalise

EMBED_CHUNK = 256


@dataclass(frozen=True)
class LabelledPair:
    a: str
    b: str
    same: bool


def read_pairs(path: Path, *, limit: int | None = None) -> list[LabelledPair]:
    """Pairs from JSON lines with ``a``, ``b`` and ``same`` (bool) or ``score`` (0-5, STS):
    a score of 4 or more is the same meaning, 2 or less different, between is skipped."""
    pairs: list[LabelledPair] = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            try:
                a, b = str(row["a"]), str(row["b"])
                if "same" in row:
                    same = bool(row["same"])
                else:
                    score = float(row["score"])
                    if 2 < score < 4:
                        continue
                    same = score >= 4
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: expected a, b and same or score") from exc
            if normalise(a) and normalise(b):
                pairs.append(LabelledPair(a, b, same))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


# --- the near-duplicate document companion set ---------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


@dataclass(frozen=True)
class Article:
    id: str
    topic: str
    title: str
    text: str


def read_articles(data_dir: Path) -> list[Article]:
    """BBC News (title, category, text) and CNN/DM + XSum articles from ``data_dir/docs``."""
    articles: list[Article] = []
    bbc = data_dir / "docs" / "bbc_news_dev.jsonl"
    if bbc.exists():
        for line in bbc.read_text().splitlines():
            row = json.loads(line)
            articles.append(Article(row["id"], f"bbc-{row['category']}", row["title"], row["text"]))
    other = data_dir / "docs" / "cnndm_xsum_with_references.jsonl"
    if other.exists():
        for line in other.read_text().splitlines():
            row = json.loads(line)
            first = _SENTENCE_END.split(row["article"].strip(), maxsplit=1)[0]
            articles.append(Article(row["id"], row["source"], first[:120], row["article"]))
    if not articles:
        raise FileNotFoundError(f"no articles under {data_dir / 'docs'}")
    return _distinct(articles)


# Two ids whose texts share this much of their shingles are one story filed twice.
_FILED_TWICE = 0.9


def _distinct(articles: list[Article]) -> list[Article]:
    """One article per story. The BBC set holds some stories twice under two ids: the same
    text, the same headline in the same category, or a copy differing by a word or two;
    without this a "different article" could be the very same document."""
    texts: set[str] = set()
    titles: set[tuple[str, str]] = set()
    buckets: dict[int, list[set[int]]] = {}
    kept: list[Article] = []
    for article in articles:
        text = " ".join(article.text.lower().split())
        title = (article.topic, " ".join(article.title.lower().split()))
        if text in texts or title in titles:
            continue
        found = neardup.shingled(text)
        near = [known for key in found.bands for known in buckets.get(key, ())]
        if any(verify.jaccard(known, found.shingles) >= _FILED_TWICE for known in near):
            continue
        texts.add(text)
        titles.add(title)
        for key in found.bands:
            buckets.setdefault(key, []).append(found.shingles)
        kept.append(article)
    return kept


def _edits(article: Article, donor: Article, rng: random.Random) -> list[str]:
    """Lightly edited copies, as syndication and resubmission produce them."""
    body = article.text.strip()
    sentences = _SENTENCE_END.split(body)
    # one sentence of another article (cut to 40 words where sentences are not split well)
    donor_sentence = " ".join(_SENTENCE_END.split(donor.text.strip())[0].split()[:40])
    spaced = re.sub(r" ", lambda _: "  " if rng.random() < 0.05 else " ", body)
    position = rng.randrange(1, max(2, len(sentences)))
    inserted = " ".join([*sentences[:position], donor_sentence, *sentences[position:]])
    return [
        # whitespace: paragraphs re-flowed, stray double spaces
        f"{article.title}\n\n" + spaced.replace("\n\n", "\n").replace("\n", " \n"),
        # a changed headline
        f"UPDATED: {article.title.upper()} - latest\n\n{body}",
        # an added sentence, from another article
        f"{article.title}\n\n{inserted}",
        # syndication furniture around the same text
        f"{article.title}\n\n(Syndicated) {body}\n\nThis article was republished from the "
        "original with permission. Share this story.",
    ]


_DIGITS = re.compile(r"\d+")


def _renumbered(article: Article, rng: random.Random) -> str | None:
    """A copy of the article with some of its figures changed (an amount, a date, a score, a
    percentage): the same text with other numbers, which a summary must not be reused for.
    None when the article has no figure."""
    body = article.text.strip()
    found = list(_DIGITS.finditer(body))
    if not found:
        return None
    chosen = {m.start() for m in rng.sample(found, k=min(len(found), rng.choice((1, 1, 2, 3))))}

    def change(match: re.Match[str]) -> str:
        if match.start() not in chosen:
            return match.group()
        value = int(match.group())
        width = len(match.group())
        new = value + rng.choice((-3, -2, -1, 1, 2, 3, 5, 10))
        if new < 0 or new == value:
            new = value + 1
        return str(new).zfill(width) if match.group().startswith("0") else str(new)

    return f"{article.title}\n\n{_DIGITS.sub(change, body)}"


def _vocabulary(article: Article) -> set[str]:
    return set(verify.words(article.text))


def companion_pairs(
    data_dir: Path,
    *,
    limit: int | None = None,
    seed: int = 7,
    say: Callable[[str], None] = print,
) -> list[LabelledPair]:
    """Near-duplicate document pairs: edited copies of an article (same), copies of it with
    some figures changed (different) and, for articles kept out of the store, the stored
    article on the same topic that shares the most vocabulary with it (different)."""
    rng = random.Random(seed)
    articles = [a for a in read_articles(data_dir) if len(a.text.split()) >= 80]
    rng.shuffle(articles)
    if limit is not None:
        articles = articles[: max(4, limit)]
    stored, unstored = articles[::2], articles[1::2]
    say(f"companion set: {len(stored)} stored articles, {len(unstored)} others on the same topics")
    pairs: list[LabelledPair] = []
    for article in stored:
        donor = rng.choice(unstored)
        for copy in _edits(article, donor, rng):
            pairs.append(LabelledPair(_document(article), copy, True))
        renumbered = _renumbered(article, rng)
        if renumbered is not None:
            pairs.append(LabelledPair(_document(article), renumbered, False))
    stored_by_topic: dict[str, list[tuple[Article, set[str]]]] = {}
    for article in stored:
        stored_by_topic.setdefault(article.topic, []).append((article, _vocabulary(article)))
    everything = [pair for pool in stored_by_topic.values() for pair in pool]
    for article in unstored:
        vocabulary = _vocabulary(article)
        pool = stored_by_topic.get(article.topic) or everything
        nearest = max(pool, key=lambda known: verify.jaccard(known[1], vocabulary))[0]
        pairs.append(LabelledPair(_document(nearest), _document(article), False))
    return pairs


def _document(article: Article) -> str:
    return f"{article.title}\n\n{article.text.strip()}"


def embed_all(
    embedder: Embedder, texts: list[str], *, say: Callable[[str], None]
) -> list[np.ndarray]:
    """The vectors of ``texts``, embedded in chunks with progress every ten chunks."""
    rows: list[np.ndarray] = []
    for start in range(0, len(texts), EMBED_CHUNK):
        rows.extend(embedder.embed(texts[start : start + EMBED_CHUNK]))
        if (start // EMBED_CHUNK) % 10 == 9:
            say(f"  embedded {min(start + EMBED_CHUNK, len(texts))}/{len(texts)}")
    return rows
