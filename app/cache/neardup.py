"""The document near-duplicate index: MinHash signatures of word 5-shingles, cut into LSH bands.

Whether a document is "the same document, lightly edited" is a question about its full text,
not about a neural embedding of its first 256 tokens. Each document's shingles (the same
5-word shingles ``app.cache.verify`` compares) get a MinHash signature of ``BANDS * ROWS``
values; each band of ``ROWS`` values is hashed to one 64-bit key. Two documents whose shingle
sets have Jaccard similarity ``J`` share at least one band key with probability
``1 - (1 - J**ROWS)**BANDS``: 99.6% at J = 0.5 (the verifier's floor), 93.6% at 0.4, 4% at
0.1 (two articles on one story share a few percent of their shingles). The keys are a
``bigint[]`` column of ``cache_entries`` with a GIN index (no pending list), so candidates
are one statement per tenant and chunk that probes the index once per distinct key
(``repository.near_duplicates``); ``app.cache.verify.same_document`` then decides on the
full texts, and its shingle Jaccard is the candidate's similarity.

The signature is the universal-hashing MinHash (``min((a * h + b) mod 2**64)`` per
permutation) in numpy over the shingle hashes, which are already 64-bit hashes; datasketch's
``MinHash.update_batch`` computes the same kind of signature but took 2.1 ms per BBC article
against 0.1 ms here (docs/cache.md), and the signature is on ingest's path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TypeVar

import numpy as np

from app.cache import verify

BANDS, ROWS = 42, 3
NUM_PERM = BANDS * ROWS
_rng = np.random.default_rng(20261202)
# Fixed for the life of the data: stored band keys are only comparable under the same values.
_A = _rng.integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 2**63, size=NUM_PERM, dtype=np.uint64)
_MIX = _rng.integers(1, 2**63, size=ROWS + 1, dtype=np.uint64) | np.uint64(1)
# What the band index holds (an entry, a job id).
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Shingled:
    """A document as the near-duplicate layer sees it: its shingles and band keys."""

    shingles: set[int]
    bands: list[int]


def band_keys(shingles: set[int]) -> list[int]:
    """The ``BANDS`` LSH keys of a shingle set (signed, to fit a Postgres ``bigint``)."""
    hashes = np.fromiter(shingles, dtype=np.int64, count=len(shingles)).view(np.uint64)
    with np.errstate(over="ignore"):
        signature = (hashes[:, None] * _A + _B).min(axis=0)
        # the high bits of a multiplicative hash are the well-mixed ones
        values = (signature >> np.uint64(16)).reshape(BANDS, ROWS)
        keys = (values * _MIX[:ROWS]).sum(axis=1, dtype=np.uint64)
        keys += np.arange(BANDS, dtype=np.uint64) * _MIX[ROWS]
    return [int(key) for key in keys.view(np.int64)]


def shingled(text: str) -> Shingled:
    """Shingles and band keys of a document's (normalised) text."""
    found = verify.shingles(verify.words(text))
    return Shingled(found, band_keys(found))


def band_index(items: Iterable[tuple[K, Sequence[int] | None]]) -> dict[int, list[K]]:
    """Items by each of their band keys: a query's candidates are then found from its own
    keys, not by comparing it with every candidate."""
    index: dict[int, list[K]] = {}
    for item, keys in items:
        for key in keys or ():
            index.setdefault(key, []).append(item)
    return index


def most_shared(index: Mapping[int, list[K]], bands: Sequence[int], limit: int) -> list[K]:
    """The ``limit`` items of ``index`` that share the most band keys with ``bands`` (a
    cheap rank before the full check), most first; items sharing none are left out."""
    found = [index[key] for key in set(bands) if key in index]
    if not found:
        return []
    # One count over every key's items (the order of first sight is that of one update per
    # key, so ties rank as before): 42 ``Counter.update`` calls a query cost more than this.
    shared: Counter[K] = Counter(chain.from_iterable(found))
    return [item for item, _ in shared.most_common(limit)]
