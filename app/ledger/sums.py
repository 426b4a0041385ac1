"""The rollup sums a stats answer is built from, as arrays: Postgres sums them per key and
mode, and they are rolled up per key, per mode and overall here, with numpy for the counts
(the histogram's among them) and exact ``Decimal`` sums for money.

A ``group_by=group`` answer holds thousands of keys of ~100 sums each: the integers come
from Postgres as one text per row and are parsed into one array at once, rather than as
~100 Python objects a row, and the roll-ups are array sums, not dictionaries summed.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from operator import add
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger

from app.ledger import histogram, repository

# Every integer sum (the histogram's counts last), every money sum, the latency sum.
INTS: tuple[str, ...] = tuple(
    name
    for name in repository.SUMS
    if name not in histogram.COLUMNS and isinstance(repository.ROLLUPS.c[name].type, BigInteger)
) + tuple(histogram.COLUMNS)
MONEY: tuple[str, ...] = tuple(
    name for name in repository.SUMS if name not in INTS and name != "latency_sum_seconds"
)
POSITION = {name: i for i, name in enumerate(INTS)}
_LPR = slice(len(INTS) - histogram.BUCKETS, len(INTS))
# Decimal sums of many rows: enough digits that adding never rounds.
_DIGITS = 60


def select_sql(*, summed: bool = True) -> str:
    """The select list over rows carrying every rollup sum: the integers as one
    comma-separated text, then each money sum, then the latency sum (fixed text); their
    sums, or the values of a row as they are (``summed=False``)."""
    total = "sum({})::bigint" if summed else "{}"
    add = "sum({})" if summed else "{}"
    ints = ", ".join(total.format(name) for name in INTS)
    money = ", ".join(add.format(name) for name in MONEY)
    return f"concat_ws(',', {ints}), {money}, {add.format('latency_sum_seconds')}"


@dataclass(frozen=True, slots=True)
class Sums:
    """Rows of sums (one per key, mode or key and mode), in the order of their labels."""

    labels: list[Any]
    ints: npt.NDArray[np.int64]  # rows x INTS
    money: list[tuple[Decimal, ...]]  # rows x MONEY
    latency: list[float]

    def column(self, name: str) -> list[int]:
        values: list[int] = self.ints[:, POSITION[name]].tolist()
        return values

    @property
    def lpr(self) -> npt.NDArray[np.int64]:
        return self.ints[:, _LPR]


def empty(labels: Sequence[Any] = ("",)) -> Sums:
    """Zero sums for ``labels``."""
    zero = (Decimal(0),) * len(MONEY)
    return Sums(
        list(labels),
        np.zeros((len(labels), len(INTS)), np.int64),
        [zero] * len(labels),
        [0.0] * len(labels),
    )


def from_rows(rows: Sequence[Sequence[Any]], skip: int) -> Sums:
    """Sums from query rows: ``skip`` label columns, then the columns of ``select_sql``;
    labels are the first ``skip`` values (one value when ``skip`` is 1, else a tuple)."""
    if not rows:
        return Sums([], np.zeros((0, len(INTS)), np.int64), [], [])
    text = ",".join(row[skip] for row in rows)
    ints = np.fromstring(text, dtype=np.int64, sep=",").reshape(len(rows), len(INTS))
    end = skip + 1 + len(MONEY)
    labels = [row[0] if skip == 1 else tuple(row[:skip]) for row in rows]
    return Sums(
        labels,
        ints,
        [tuple(row[skip + 1 : end]) for row in rows],
        [float(row[end]) for row in rows],
    )


def by(sums: Sums, label: Sequence[Hashable]) -> Sums:
    """``sums`` added up per value of ``label`` (one per row), in order of first appearance."""
    index: dict[Hashable, int] = {}
    codes = np.fromiter(
        (index.setdefault(value, len(index)) for value in label), np.intp, len(label)
    )
    # Integer sums are exact in any order: the rows sorted by code, each run added at once
    # (``np.add.at`` adds a row at a time).
    order = np.argsort(codes, kind="stable")
    ints = (
        np.add.reduceat(sums.ints[order], np.flatnonzero(np.diff(codes[order], prepend=-1)))
        if len(codes)
        else np.zeros((0, len(INTS)), np.int64)
    )
    latency = np.zeros(len(index))
    np.add.at(latency, codes, np.asarray(sums.latency, dtype=np.float64))
    members: list[list[tuple[Decimal, ...]]] = [[] for _ in index]
    for code, money in zip(codes.tolist(), sums.money, strict=True):
        members[code].append(money)
    with localcontext() as context:
        context.prec = _DIGITS
        # Most keys have a row or two (a group's modes): added without ``sum``'s generators.
        added = [
            rows[0]
            if len(rows) == 1
            else tuple(map(add, *rows))
            if len(rows) == 2
            else tuple(sum(column) for column in zip(*rows, strict=True))
            for rows in members
        ]
    return Sums(list(index), ints, added, latency.tolist())


def minus(whole: Sums, part: Sums) -> Sums:
    """``whole`` less ``part``, row by row of ``whole``'s labels (a label ``part`` lacks is
    taken whole): all jobs less those in groups, the jobs in no group."""
    rows = {label: i for i, label in enumerate(part.labels)}
    ints = whole.ints.copy()
    money = list(whole.money)
    latency = list(whole.latency)
    with localcontext() as context:
        context.prec = _DIGITS
        for i, label in enumerate(whole.labels):
            j = rows.get(label)
            if j is None:
                continue
            ints[i] -= part.ints[j]
            money[i] = tuple(a - b for a, b in zip(money[i], part.money[j], strict=True))
            latency[i] -= part.latency[j]
    return Sums(list(whole.labels), ints, money, latency)


def join(*parts: Sums) -> Sums:
    """The rows of ``parts``, one after another."""
    return Sums(
        [label for part in parts for label in part.labels],
        np.concatenate([part.ints for part in parts]),
        [money for part in parts for money in part.money],
        [latency for part in parts for latency in part.latency],
    )


def relabel(sums: Sums, labels: Sequence[Any]) -> Sums:
    """The same rows under other labels."""
    return Sums(list(labels), sums.ints, sums.money, sums.latency)
