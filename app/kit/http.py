"""HTTP helpers shared by the provider adapters and webhook delivery."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache


@lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every outgoing client uses, built once per process: loading
    the CA bundle costs tens of milliseconds, more than a call to a fast provider."""
    return ssl.create_default_context()


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The wait a 429/503 asks for: ``retry-after-ms`` (OpenAI's) first, then ``retry-after``."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            value = float(milliseconds) / 1000
        except ValueError:
            pass
        else:
            if value >= 0:
                return value
    return parse_retry_after(headers.get("retry-after"), now=now or datetime.now(UTC))
