"""Weighted fair share of a window across tenants: a tenant that submits a million jobs does
not claim a batch ahead of everyone else in the same model's window.

Each batch's places are shared in proportion to the tenants' weights (water-filling: a tenant
that needs less than its share takes what it needs, and the rest is shared again among the
others); priority still orders the jobs inside each tenant's share.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from fractions import Fraction
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def fair_quotas(waiting: Mapping[K, int], weights: Mapping[K, int], capacity: int) -> dict[K, int]:
    """How many of ``capacity`` places each key gets: in proportion to its weight, never more
    than it has ``waiting``; places a key cannot use go to the others. Whole places only,
    the leftovers to the largest remainders (ties by order)."""
    quotas = {key: 0 for key in waiting}
    active = [key for key, count in waiting.items() if count > 0]
    left = capacity
    while active and left > 0:
        total = sum(weights[key] for key in active)
        shares = {key: Fraction(left * weights[key], total) for key in active}
        satisfied = [key for key in active if waiting[key] - quotas[key] <= shares[key]]
        if not satisfied:
            whole = {key: int(shares[key]) for key in active}
            for key in active:
                quotas[key] += whole[key]
            rest = left - sum(whole.values())
            by_remainder = sorted(active, key=lambda k: shares[k] - whole[k], reverse=True)
            for key in by_remainder[:rest]:
                quotas[key] += 1
            return quotas
        for key in satisfied:
            need = waiting[key] - quotas[key]
            quotas[key] += need
            left -= need
            active.remove(key)
    return quotas


def interleave(rows: Mapping[K, Sequence[T]], weights: Mapping[K, int]) -> list[T]:
    """Each key's rows (in its own order) merged so that every prefix is close to a weighted
    fair share: row ``i`` of a key with weight ``w`` comes at virtual time ``(i + 1) / w``."""
    tagged = [
        (Fraction(index + 1, weights[key]), order, row)
        for order, (key, items) in enumerate(rows.items())
        for index, row in enumerate(items)
    ]
    tagged.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in tagged]
