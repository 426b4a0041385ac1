"""Which way a prompt's nearest entries are searched: exactly or by the HNSW index.

A filtered HNSW search walks past other tenants' and scopes' rows to find its own; when the
scope holds a small share of the index that costs more than reading every row of the scope
and sorting their distances, which is also exact (docs/benchmarks.md, "Semantic cache
lookups: one tenant among 100"). So a scope with fewer than ``cache_exact_below`` entries is
searched exactly and a larger one by HNSW. The size is counted up to that bound and
remembered for ``REMEMBER_SECONDS`` in this process, so a lookup rarely pays for the count; a
stale size only moves a scope between two searches that both return its nearest entries.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from app.cache import repository

SearchPath = Literal["exact", "hnsw"]
Scope = tuple[uuid.UUID, str]  # (tenant_id, scope_key)

REMEMBER_SECONDS = 30.0
# Past this many remembered scopes, the expired ones are dropped (bounded memory).
_PRUNE_ABOVE = 4096


@dataclass(frozen=True)
class _Known:
    count: int  # entries, counted up to ``bound``
    bound: int
    at: float

    def answers(self, below: int) -> bool:
        """Whether this count tells a scope under ``below`` from one at or over it."""
        return self.count < self.bound or below <= self.bound


class ScopeSizes:
    """Scope sizes, counted when unknown or older than ``remember_seconds``."""

    def __init__(
        self,
        *,
        remember_seconds: float = REMEMBER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.remember_seconds = remember_seconds
        self.clock = clock
        self._known: dict[Scope, _Known] = {}

    def paths(
        self, session: Session, *, scopes: Iterable[Scope], exact_below: int
    ) -> dict[Scope, SearchPath]:
        """The search path of each of ``scopes``: ``exact`` under ``exact_below`` entries."""
        wanted = set(scopes)
        if exact_below <= 0:
            return dict.fromkeys(wanted, "hnsw")
        now = self.clock()
        stale = sorted(
            scope
            for scope in wanted
            if (known := self._known.get(scope)) is None
            or now - known.at >= self.remember_seconds
            or not known.answers(exact_below)
        )
        counts = repository.scope_sizes(session, scopes=stale, limit=exact_below)
        for scope, count in zip(stale, counts, strict=True):
            self._known[scope] = _Known(count, exact_below, now)
        if len(self._known) > _PRUNE_ABOVE:
            self._known = {
                scope: known
                for scope, known in self._known.items()
                if scope in wanted or now - known.at < self.remember_seconds
            }
        return {
            scope: "exact" if self._known[scope].count < exact_below else "hnsw" for scope in wanted
        }

    def forget(self) -> None:
        self._known.clear()


scope_sizes = ScopeSizes()
