"""Provider requests by adapter and outcome, counted as they end (after the retries)."""

from __future__ import annotations

from prometheus_client import Counter

PROVIDER_REQUESTS = Counter(
    "thrifty_provider_requests",
    "Provider HTTP requests by adapter and outcome (ok, http_<status>, transport_error)",
    ["provider", "outcome"],
)
PROVIDER_RETRIES = Counter(
    "thrifty_provider_retries", "Provider HTTP attempts retried, by adapter", ["provider"]
)
