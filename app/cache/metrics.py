"""Cache lookups at ingest by outcome: exact hit, semantic hit, miss (bypass: not looked up)."""

from __future__ import annotations

from prometheus_client import Counter

CACHE_LOOKUPS = Counter("thrifty_cache_lookups", "Cache lookups at ingest by outcome", ["outcome"])


def count_lookups(*, exact: int, semantic: int, misses: int) -> None:
    for outcome, count in (("exact", exact), ("semantic", semantic), ("miss", misses)):
        if count:
            CACHE_LOOKUPS.labels(outcome).inc(count)
