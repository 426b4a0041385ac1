"""Adapters by provider name, built from the catalog.

Every adapter gets the same connection from the provider's catalog entry
(:func:`_connection`: ``ProviderConfig.resolved_base_url()``, ``api_key()``, its timeout and
retry policy); only the provider-specific options differ.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from app.catalog.catalog import Catalog, ProviderConfig
from app.providers.anthropic_batch import LIMITS as ANTHROPIC_LIMITS
from app.providers.anthropic_batch import AnthropicBatchProvider
from app.providers.base import BatchProvider, ProviderLimits, RealtimeProvider
from app.providers.breaker import Breaker
from app.providers.http import HTTPOptions, RetryPolicy
from app.providers.openai_batch import LIMITS as OPENAI_LIMITS
from app.providers.openai_batch import OpenAIBatchProvider
from app.providers.openai_realtime import OpenAIRealtimeProvider


class Connection(HTTPOptions):
    """Where and how an adapter reaches its provider."""

    base_url: str
    api_key: str


def _limits(config: ProviderConfig, published: ProviderLimits) -> ProviderLimits:
    # A catalog may lower the limits (a proxy in front of the provider), never raise them.
    return ProviderLimits(
        max_requests=min(config.max_requests or published.max_requests, published.max_requests),
        max_bytes=min(config.max_bytes or published.max_bytes, published.max_bytes),
    )


def batch_limits(catalog: Catalog) -> dict[str, ProviderLimits]:
    """Per-batch limits of every provider with a batch API, from the catalog and the
    providers' published limits (no adapter is built)."""
    published = {"openai_batch": OPENAI_LIMITS, "anthropic_batch": ANTHROPIC_LIMITS}
    return {
        name: _limits(config, published[config.kind])
        for name, config in catalog.providers.items()
        if config.kind in published
    }


def _connection(name: str, config: ProviderConfig) -> Connection:
    return {
        "base_url": config.resolved_base_url(),
        "api_key": config.api_key(),
        "timeout": config.timeout_seconds,
        "policy": RetryPolicy(max_attempts=config.max_attempts),
        "observer": Breaker(name, config).observe,
    }


def get_provider(catalog: Catalog, name: str) -> BatchProvider:
    """The batch adapter for provider ``name``."""
    config = catalog.providers[name]
    if config.kind == "anthropic_batch":
        return AnthropicBatchProvider(
            **_connection(name, config),
            anthropic_version=config.anthropic_version,
            limits=_limits(config, ANTHROPIC_LIMITS),
        )
    if config.kind == "openai_batch":
        return OpenAIBatchProvider(
            **_connection(name, config),
            completion_window=config.completion_window,
            limits=_limits(config, OPENAI_LIMITS),
        )
    raise ValueError(f"provider {name} ({config.kind}) has no batch API")


# Long-lived adapters per (process, catalog, provider): a client built before a fork must not
# be used by the children, and a reloaded catalog gets new ones.
_BATCH: dict[tuple[int, int, str], tuple[Catalog, BatchProvider]] = {}
_REALTIME: dict[tuple[int, int, str], tuple[Catalog, RealtimeProvider]] = {}
_FLEX: dict[tuple[int, int, str], tuple[Catalog, RealtimeProvider]] = {}
P = TypeVar("P")


def _shared(
    cache: dict[tuple[int, int, str], tuple[Catalog, P]],
    build: Callable[[Catalog, str], P],
    catalog: Catalog,
    name: str,
) -> P:
    key = (os.getpid(), id(catalog), name)
    cached = cache.get(key)
    if cached is None or cached[0] is not catalog:
        cached = cache[key] = (catalog, build(catalog, name))
    return cached[1]


def shared_provider(catalog: Catalog, name: str) -> BatchProvider:
    """This process's long-lived batch adapter for ``name``; callers must not close it.

    Workers reuse one so its connection pool keeps connections to the provider open between
    submits and polls: a new connection (and its TLS handshake) per call costs more than a
    poll against a fast provider.
    """
    return _shared(_BATCH, get_provider, catalog, name)


def shared_realtime_provider(catalog: Catalog, name: str) -> RealtimeProvider:
    """This process's long-lived realtime adapter for ``name``; callers must not close it."""
    return _shared(_REALTIME, get_realtime_provider, catalog, name)


def get_realtime_provider(catalog: Catalog, name: str) -> RealtimeProvider:
    """The realtime chat adapter for provider ``name``.

    Every OpenAI-protocol provider has one (``openai_batch`` providers serve
    ``/chat/completions`` at the same base URL); Anthropic's realtime API is not wired yet.
    """
    config = catalog.providers[name]
    if config.kind == "anthropic_batch":
        raise ValueError(f"provider {name} ({config.kind}) has no OpenAI-compatible chat API")
    return OpenAIRealtimeProvider(**_connection(name, config))


# A flex call refused for capacity (429) is tried once more, then falls back to realtime
# (app/batching/submitter.py): OpenAI's 429s on flex mean "no capacity now", not a rate limit.
FLEX_ATTEMPTS = 2


def get_flex_provider(catalog: Catalog, name: str) -> RealtimeProvider:
    """The flex adapter for provider ``name`` (an ``openai_batch`` provider): chat calls with
    ``service_tier: "flex"`` and the provider's long ``flex_timeout_seconds``. Its 429s do
    not count towards the provider's circuit breaker: they say flex is full, not OpenAI."""
    config = catalog.providers[name]
    if not config.has_flex:
        raise ValueError(f"provider {name} ({config.kind}) has no flex tier")
    connection = _connection(name, config)
    connection["timeout"] = config.flex_timeout_seconds
    connection["policy"] = RetryPolicy(max_attempts=min(FLEX_ATTEMPTS, config.max_attempts))
    connection["observer"] = None
    return OpenAIRealtimeProvider(service_tier="flex", **connection)


def shared_flex_provider(catalog: Catalog, name: str) -> RealtimeProvider:
    """This process's long-lived flex adapter for ``name``; callers must not close it."""
    return _shared(_FLEX, get_flex_provider, catalog, name)


def realtime_concurrency(catalog: Catalog, name: str) -> int:
    """How many realtime calls to provider ``name`` may be in flight at once."""
    return catalog.providers[name].concurrency
