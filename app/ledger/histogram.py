"""The fixed latency buckets the rollups count jobs in, and percentiles read from them.

Bounds grow by 2^(1/3) (about 26 %) from 10 ms to two days: bucket 0 holds latencies under
10 ms, bucket k (1..73) latencies in [BOUNDS[k-1], BOUNDS[k]), the last one everything from
two days on. A percentile is interpolated geometrically inside its bucket, so it is within
one bucket's width (±13 %) of the exact value; Postgres' ``width_bucket`` with the same bounds
assigns the buckets in SQL.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate

from app.models.cost_rollup import LATENCY_BUCKETS, LATENCY_COLUMNS

FIRST = 0.01
GROWTH = 2 ** (1 / 3)
BOUNDS: tuple[float, ...] = tuple(round(FIRST * GROWTH**i, 6) for i in range(74))
BUCKETS = len(BOUNDS) + 1
COLUMNS = LATENCY_COLUMNS
assert BUCKETS == LATENCY_BUCKETS


def bucket(seconds: float) -> int:
    """The bucket of a latency (as ``width_bucket(seconds, BOUNDS)`` computes it)."""
    low, high = 0, len(BOUNDS)
    while low < high:
        middle = (low + high) // 2
        if BOUNDS[middle] <= seconds:
            low = middle + 1
        else:
            high = middle
    return low


def bounds_sql() -> str:
    """The bounds as a Postgres array literal (fixed text, no values from outside)."""
    return "ARRAY[" + ",".join(repr(b) for b in BOUNDS) + "]::float8[]"


def percentiles(counts: Sequence[int], qs: Sequence[float]) -> list[float | None]:
    """The ``qs`` quantiles (0..1) of the latencies counted in ``counts`` (None when empty),
    summing the buckets once: the stats answer reads three of each of thousands."""
    cumulative = list(accumulate(counts))
    total = cumulative[-1] if cumulative else 0
    if total == 0:
        return [None] * len(qs)
    found: list[float | None] = []
    for q in qs:
        rank = max(1.0, math.ceil(q * total))
        # The first bucket whose running total reaches the rank (it holds jobs: an empty
        # bucket's total equals the one before it, which would have been found first).
        index = bisect_left(cumulative, rank)
        seen = cumulative[index - 1] if index > 0 else 0
        low = BOUNDS[index - 1] if index > 0 else FIRST / GROWTH
        high = BOUNDS[index] if index < len(BOUNDS) else BOUNDS[-1] * GROWTH
        share = (rank - seen) / counts[index]
        found.append(round(float(low * (high / low) ** share), 4))
    return found
