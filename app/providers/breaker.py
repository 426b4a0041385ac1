"""A circuit breaker per provider over its 5xx / 429 answers, shared by every process.

Every HTTP attempt to a provider is counted in Redis, in buckets of a tenth of the
provider's ``breaker_window_seconds``. When a failed attempt finds that, over the window,
at least ``breaker_min_calls`` attempts were answered and ``breaker_failure_ratio`` of them
failed (a 5xx, a 429, no answer at all), the provider's circuit opens for
``breaker_cooldown_seconds``: routing then sends new work down each model's fallback chain
to a provider whose circuit is closed (``app.routing.service.avoid_open_circuits``).

Redis being down never fails a provider call or a routing decision: the breaker then counts
nothing and every circuit reads closed.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from app.catalog.catalog import Catalog, ProviderConfig
from app.config import get_settings

log = logging.getLogger(__name__)

PREFIX = "thrifty:breaker"
BUCKETS = 10
# How long a process trusts what it read of the circuits (routing reads them per job).
READ_EVERY_SECONDS = 1.0

_lock = threading.Lock()
_client: redis.Redis[bytes] | None = None
_read: tuple[float, frozenset[str]] | None = None


def _redis() -> redis.Redis[bytes]:
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(
                get_settings().redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
        return _client


def open_key(provider: str) -> str:
    return f"{PREFIX}:{provider}:open"


class Breaker:
    """Counts one provider's attempts (``observe``) and opens its circuit on a storm."""

    def __init__(self, provider: str, config: ProviderConfig) -> None:
        self.provider = provider
        self.config = config
        self.bucket_seconds = max(1.0, config.breaker_window_seconds / BUCKETS)

    def observe(self, ok: bool) -> None:
        """Count an attempt: ``ok`` is any answer but a 5xx or 429."""
        bucket = int(time.time() // self.bucket_seconds)
        key = f"{PREFIX}:{self.provider}:{bucket}"
        try:
            pipe = _redis().pipeline(transaction=False)
            pipe.hincrby(key, "ok" if ok else "failed", 1)
            pipe.expire(key, int(self.config.breaker_window_seconds + self.bucket_seconds) + 1)
            if not ok:
                for past in range(bucket - BUCKETS + 1, bucket + 1):
                    pipe.hmget(f"{PREFIX}:{self.provider}:{past}", "ok", "failed")
            answers = pipe.execute()
            if ok:
                return
            counts = [(int(o or 0), int(f or 0)) for o, f in answers[2:]]
            failed = sum(f for _, f in counts)
            calls = failed + sum(o for o, _ in counts)
            if (
                calls >= self.config.breaker_min_calls
                and failed / calls >= self.config.breaker_failure_ratio
            ):
                cooldown = int(self.config.breaker_cooldown_seconds * 1000)
                if _redis().set(open_key(self.provider), str(time.time()), px=cooldown, nx=True):
                    log.warning(
                        "circuit of provider %s open for %gs: %d of %d attempts failed",
                        self.provider, self.config.breaker_cooldown_seconds, failed, calls,
                    )  # fmt: skip
        except redis.RedisError:
            log.debug("circuit breaker: Redis did not answer", exc_info=True)


def open_providers(catalog: Catalog, *, fresh: bool = False) -> frozenset[str]:
    """The providers of ``catalog`` whose circuit is open (read at most once a second per
    process unless ``fresh``)."""
    global _read
    now = time.monotonic()
    cached = _read
    if not fresh and cached is not None and now - cached[0] < READ_EVERY_SECONDS:
        return cached[1]
    names = sorted(catalog.providers)
    try:
        flags = _redis().mget([open_key(name) for name in names])
        found = frozenset(name for name, flag in zip(names, flags, strict=True) if flag)
    except redis.RedisError:
        found = frozenset()
    _read = (now, found)
    return found


def close(provider: str = "*") -> None:
    """Close a provider's circuit (every provider's by default) and forget its counts
    (operators and tests)."""
    global _read
    client = _redis()
    keys = list(client.scan_iter(f"{PREFIX}:{provider}:*"))
    if keys:
        client.delete(*keys)
    _read = None
