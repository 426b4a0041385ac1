"""Rate limits shared by every API process, in Redis, with the ``limits`` library.

A sliding-window counter per (limit, key): a weighted hit (a list of 500 jobs counts 500)
is one INCRBY, whatever the weight. Over the limit: 429 ``rate_limited`` with
``Retry-After``. When Redis does not answer the request goes through (logged): the limiter
guards fairness, and an outage of it must not take the API down with it.
"""

from __future__ import annotations

import logging
import math
import time
from functools import lru_cache
from typing import Annotated

from fastapi import Depends
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from app.config import get_settings
from app.kit.errors import TooManyRequests, ValidationFailed

log = logging.getLogger(__name__)


class RateLimiter:
    def __init__(self, redis_url: str) -> None:
        storage = storage_from_string(redis_url, socket_timeout=1, socket_connect_timeout=1)
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    def hit(self, name: str, key: str, *, per_minute: int, cost: int = 1) -> None:
        """Count ``cost`` against ``per_minute`` for ``key``; 429 once it is spent."""
        if cost > per_minute:
            # It would never fit: retrying cannot help, so this is not a 429.
            raise ValidationFailed(
                f"{cost} {name} in one request is over the limit of {per_minute} a minute; split it"
            )
        item = RateLimitItemPerMinute(per_minute, namespace=f"thrifty-{name}")
        try:
            allowed = self._limiter.hit(item, key, cost=cost)
            if allowed:
                return
            reset = self._limiter.get_window_stats(item, key).reset_time
        except Exception as exc:  # a Redis error of any kind: fail open
            log.warning("rate limiter unavailable, not limiting %s: %r", name, exc)
            return
        retry_after = max(1, math.ceil(reset - time.time()))
        raise TooManyRequests(
            f"rate limit: {per_minute} {name} a minute; retry after {retry_after} s",
            retry_after=retry_after,
        )


@lru_cache
def get_rate_limiter() -> RateLimiter:
    return RateLimiter(get_settings().redis_url)


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
