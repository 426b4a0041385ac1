"""What a job cost, and the counterfactual chain behind its savings by layer.

naive (the tenant's baseline model, by default the catalog's naive_model, at realtime list
price) → routed (the routed model, realtime list price) → batched (its batch discount, when
it went through a Batch API) → prompt-cached (the provider's cached-input and cache-write
prices) → actual (what was paid; zero for a job answered by Thrifty's cache). Each saving is
the difference of two neighbours, so the layers add up to naive minus actual exactly, per
job and in every sum.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from app.accounting import service as accounting_service
from app.catalog.catalog import Catalog, ModelConfig
from app.models import JobMode

_MILLION = Decimal(1_000_000)
# Every amount is kept to 12 decimal places (the ledger's columns): prices per million tokens
# with two decimals and a two-decimal discount need 10, so nothing is rounded in practice.
QUANTUM = Decimal("1e-12")
ZERO = Decimal(0)


class AnsweredBy(enum.StrEnum):
    """Who produced a completed job's answer."""

    provider = "provider"
    cache_exact = "cache_exact"
    cache_semantic = "cache_semantic"
    coalesced = "coalesced"  # another job's identical request in flight (the cost-levers issue)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """A request's usage as the provider reported it. ``input_tokens`` counts every input
    token, including those read from (``cached_input_tokens``) or written to
    (``cache_write_tokens``) the provider's prompt cache."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def uncached_input_tokens(self) -> int:
        return max(0, self.input_tokens - self.cached_input_tokens - self.cache_write_tokens)


@dataclass(frozen=True, slots=True)
class Savings:
    """Savings by layer, in USD; ``total`` is naive minus actual."""

    cache: Decimal = ZERO
    coalescing: Decimal = ZERO
    routing: Decimal = ZERO
    batching: Decimal = ZERO
    prompt_cache: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.cache + self.coalescing + self.routing + self.batching + self.prompt_cache


@dataclass(frozen=True, slots=True)
class CostChain:
    """One job's costs along the chain; every amount is a Decimal quantised to ``QUANTUM``."""

    naive: Decimal
    routed: Decimal
    batched: Decimal
    prompt_cached: Decimal
    actual: Decimal
    answered_by: AnsweredBy = AnsweredBy.provider

    @property
    def savings(self) -> Savings:
        answered = self.prompt_cached - self.actual
        return Savings(
            cache=answered if self.answered_by in _CACHE else ZERO,
            coalescing=answered if self.answered_by == AnsweredBy.coalesced else ZERO,
            routing=self.naive - self.routed,
            batching=self.routed - self.batched,
            prompt_cache=self.batched - self.prompt_cached,
        )


_CACHE = frozenset({AnsweredBy.cache_exact, AnsweredBy.cache_semantic})
NOTHING = CostChain(ZERO, ZERO, ZERO, ZERO, ZERO)


def _q(amount: Decimal) -> Decimal:
    return amount.quantize(QUANTUM)


def list_price(model: ModelConfig, usage: TokenUsage) -> Decimal:
    """Realtime list price of the usage on ``model``, no prompt caching."""
    return _q(
        accounting_service.list_price(
            model, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
        )
    )


def _discount(model: ModelConfig, mode: JobMode | None) -> Decimal:
    # OpenAI prices its flex tier as its Batch API (the batch discount).
    discounted = mode in (JobMode.batch, JobMode.flex)
    return 1 - model.batch_discount if discounted else Decimal(1)


def paid_price(model: ModelConfig, mode: JobMode | None, usage: TokenUsage) -> Decimal:
    """What the provider charges: cached input at the cached-input price, cache writes at the
    cache-write price (each the input price when the model has none), the batch discount on
    everything when the request went through a Batch API."""
    cached = model.cached_input_per_mtok
    write = model.cache_write_per_mtok
    tokens = (
        model.input_per_mtok * usage.uncached_input_tokens
        + (model.input_per_mtok if cached is None else cached) * usage.cached_input_tokens
        + (model.input_per_mtok if write is None else write) * usage.cache_write_tokens
        + model.output_per_mtok * usage.output_tokens
    )
    return _q(tokens * _discount(model, mode) / _MILLION)


def chain(
    catalog: Catalog,
    *,
    model: str | ModelConfig,
    mode: JobMode | None,
    usage: TokenUsage,
    answered_by: AnsweredBy = AnsweredBy.provider,
    naive_model: str | None = None,
) -> CostChain:
    """The chain of a completed job routed to ``model`` in ``mode``.

    A job answered by the provider paid the prompt-cached price. One answered by the cache
    (or by another job's identical request) paid nothing, and records what it would have cost
    on its routed path (model and mode as routed, batch discount included): that amount is
    what the cache saved, the rest of naive minus zero is routing's and batching's.
    ``model`` is a catalog model's name, or its prices (those a batch recorded when claimed).
    ``naive_model`` is the tenant's baseline model; unset, or no longer in the catalog, it is
    the catalog's ``naive_model``.
    """
    routed_model = catalog.model(model) if isinstance(model, str) else model
    if naive_model is None or not catalog.has_model(naive_model):
        naive_model = catalog.naive_model
    naive = list_price(catalog.model(naive_model), usage)
    routed = list_price(routed_model, usage)
    batched = _q(routed * _discount(routed_model, mode))
    prompt_cached = paid_price(routed_model, mode, usage)
    actual = prompt_cached if answered_by == AnsweredBy.provider else ZERO
    return CostChain(naive, routed, batched, prompt_cached, actual, answered_by)
