"""The fixed latency buckets the rollups count jobs in, and percentiles read from them.

Bounds grow by 2^(1/3) (about 26 %) from 10 ms to two days: bucket 0 holds latencies under
10 ms, bucket k (1..73) latencies in [BOUNDS[k-1], BOUNDS[k]), the last one everything from
two days on. A percentile is interpolated geometrically inside its bucket, so it is within
one bucket's width (±13 %) of the exact value; Postgres' ``width_bucket`` with the same bounds
assigns the buckets in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import mul

import numpy as np
import numpy.typing as npt

from app.models.cost_rollup import LATENCY_BUCKETS, LATENCY_COLUMNS

FIRST = 0.01
GROWTH = 2 ** (1 / 3)
BOUNDS: tuple[float, ...] = tuple(round(FIRST * GROWTH**i, 6) for i in range(74))
BUCKETS = len(BOUNDS) + 1
COLUMNS = LATENCY_COLUMNS
assert BUCKETS == LATENCY_BUCKETS
# Each bucket's bounds for the interpolation: below the first bound, above the last.
_LOW = np.array((FIRST / GROWTH, *BOUNDS))
_HIGH = np.array((*BOUNDS, BOUNDS[-1] * GROWTH))
_RATIO = _HIGH / _LOW  # each the float division Python's ``high / low`` gives


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
    """The ``qs`` quantiles (0..1) of the latencies counted in ``counts`` (None when empty)."""
    return percentiles_of(np.asarray(counts, dtype=np.int64).reshape(1, BUCKETS), qs)[0]


def percentiles_of(counts: npt.NDArray[np.int64], qs: Sequence[float]) -> list[list[float | None]]:
    """The ``qs`` quantiles of each row of bucket counts (rows x ``BUCKETS``): the stats
    answer reads three of each of thousands. numpy finds each quantile's bucket for every row
    at once; the interpolation inside it is Python's float arithmetic, one value at a time."""
    rows = np.arange(len(counts))
    cumulative = np.cumsum(counts, axis=1)
    totals = cumulative[:, -1]
    columns: list[list[float | None]] = []
    for q in qs:
        rank = np.maximum(1.0, np.ceil(q * totals))
        # The first bucket whose running total reaches the rank (it holds jobs: an empty
        # bucket's total equals the one before it, which would have been found first).
        index = np.minimum((cumulative < rank[:, None]).sum(axis=1), BUCKETS - 1)
        seen = np.where(index > 0, cumulative[rows, index - 1], 0)
        share = (rank - seen) / np.maximum(counts[rows, index], 1)
        # Each value is round(low * ratio ** share, 4), as Python's float arithmetic gives
        # it: the builtins mapped over whole columns rather than a loop step a value.
        values = map(mul, _LOW[index].tolist(), map(pow, _RATIO[index].tolist(), share.tolist()))
        columns.append(list(map(round, values, repeat(4))))
    if len(rows) and not totals.all():  # a row without jobs has no percentiles
        for i in np.flatnonzero(totals == 0).tolist():
            for column in columns:
                column[i] = None
    return [list(row) for row in zip(*columns, strict=True)] if columns else [[] for _ in rows]
