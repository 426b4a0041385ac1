"""The blocks of a stats answer (``app/ledger/schemas.StatsBlock``), built from one ``Sums``'
rows as JSON-ready dictionaries: money already its decimal string, every float already
rounded, keys in the model's field order. ``app/ledger/stats.py`` writes the answer with
orjson, whose output is the bytes pydantic writes for the same ``StatsOut`` (a test checks
it): validating and serialising thousands of blocks through the models cost more than
computing them (``group_by=group`` with ~2,000 groups).

Each figure is computed a column at a time (every row's cost, every row's rate), with the
same ``Decimal`` and float arithmetic the model path used, so every value is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from itertools import repeat
from operator import sub
from typing import Any

from app.ledger import histogram, repository, sums
from app.ledger.pricing import QUANTUM

_STATES = ("completed", "failed", "cancelled")
_LAYERS = tuple(f"saved_{layer}_usd" for layer in repository.LAYERS)
_INTS = sums.INTS[: -histogram.BUCKETS]


# Mapped builtins, not a loop step a value: thousands of rows a column.
def _quantized(values: Sequence[Decimal]) -> list[Decimal]:
    return list(map(Decimal.quantize, values, repeat(QUANTUM)))


def _texts(values: Sequence[Decimal]) -> list[str]:
    return list(map(format, values, repeat("f")))


def _rates(parts: Sequence[int], wholes: Sequence[int]) -> list[float | None]:
    return [round(p / w, 6) if w else None for p, w in zip(parts, wholes, strict=True)]


def _per_job(money: Sequence[Decimal], counts: Sequence[int]) -> list[str | None]:
    return [
        format((m / n).quantize(QUANTUM), "f") if n else None
        for m, n in zip(money, counts, strict=True)
    ]


class Blocks:
    """The blocks of ``totals``' rows: ``lpr[row]`` a row's percentiles, ``block(...)`` its
    whole block."""

    def __init__(self, totals: sums.Sums, *, whole: bool = True) -> None:
        """``whole=False``: the rows' percentiles only (a grouping's rows per mode)."""
        column = dict(zip(_INTS, totals.ints[:, : len(_INTS)].T.tolist(), strict=True))
        self.completed: list[int] = column["completed"]
        quantiles = histogram.percentiles_of(totals.lpr, (0.50, 0.95, 0.99))
        self.lpr = [
            {"p50": p50, "p95": p95, "p99": p99,
             "mean": round(latency / completed, 4) if completed else None}
            for (p50, p95, p99), latency, completed in zip(
                quantiles, totals.latency, self.completed, strict=True
            )
        ]  # fmt: skip
        self._rows: list[tuple[Any, ...]] = []
        if whole:
            self._rows = self._whole(totals, column)

    def _whole(self, totals: sums.Sums, column: dict[str, list[int]]) -> list[tuple[Any, ...]]:
        """Every other figure of each row, in the order ``block`` unpacks them."""
        money = dict(
            zip(sums.MONEY, zip(*totals.money, strict=True), strict=True)
            if totals.labels
            else ((name, ()) for name in sums.MONEY)
        )
        cost = _quantized(money["cost_usd"])
        naive = _quantized(money["naive_cost_usd"])
        layers = [_texts(_quantized(money[name])) for name in _LAYERS]
        completed, exact, semantic = self.completed, column["cache_exact"], column["cache_semantic"]
        jobs = [
            {**dict(zip(_STATES, counts, strict=True)), "total": sum(counts)}
            for counts in zip(*(column[state] for state in _STATES), strict=True)
        ]
        deadlines = [
            {"jobs": n, "met": met, "met_rate": rate}
            for n, met, rate in zip(
                column["deadline_jobs"],
                column["deadline_met"],
                _rates(column["deadline_met"], column["deadline_jobs"]),
                strict=True,
            )
        ]
        hits = [
            {"total": total, "exact": e, "semantic": s}
            for total, e, s in zip(
                _rates([e + s for e, s in zip(exact, semantic, strict=True)], completed),
                _rates(exact, completed),
                _rates(semantic, completed),
                strict=True,
            )
        ]
        tokens = [
            {"input": i, "cached_input": c, "cache_write": w, "output": o}
            for i, c, w, o in zip(
                column["input_tokens"],
                column["cached_input_tokens"],
                column["cache_write_tokens"],
                column["output_tokens"],
                strict=True,
            )
        ]
        return list(
            zip(
                jobs,
                _texts(cost),
                _texts(naive),
                _texts(list(map(sub, naive, cost))),
                _per_job(cost, completed),
                _per_job(naive, completed),
                [
                    dict(zip(repository.LAYERS, row, strict=True))
                    for row in zip(*layers, strict=True)
                ],
                deadlines,
                hits,
                tokens,
                strict=True,
            )
        )

    def block(
        self,
        row: int,
        by_mode: list[tuple[str, Blocks, int]],
        *,
        seconds: float,
        peak: int | None,
    ) -> dict[str, Any]:
        """Row ``row``'s block; ``by_mode``: its modes' rows (mode, their blocks, row)."""
        jobs, cost, naive, saved, cpr, naive_cpr, layers, deadlines, hits, tokens = self._rows[row]
        completed = self.completed[row]
        return {
            "jobs": jobs,
            "cost_usd": cost,
            "naive_cost_usd": naive,
            "saved_usd": saved,
            "cpr_usd": cpr,
            "naive_cpr_usd": naive_cpr,
            "savings_usd": layers,
            "lpr_seconds": self.lpr[row],
            "lpr_seconds_by_mode": {
                mode: blocks.lpr[i]
                for mode, blocks, i in sorted(by_mode, key=lambda entry: entry[0])
                if blocks.completed[i]
            },
            "deadlines": deadlines,
            "throughput_jobs_per_s": round(completed / seconds, 6) if seconds > 0 else 0.0,
            "peak_minute_jobs_per_s": None if peak is None else round(peak / 60, 6),
            "cache_hit_rate": hits,
            "tokens": tokens,
        }
