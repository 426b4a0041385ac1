"""A window is the waiting jobs of one (provider, model, mode); these are its flush thresholds
and the estimates they are measured in."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from app.catalog.catalog import Catalog
from app.kit.prompts import Request, build_messages
from app.models import JobMode
from app.providers.base import ProviderLimits

# What one request line adds besides its messages: custom_id, method, url, model, max_tokens.
LINE_OVERHEAD_BYTES = 400
# A window with no byte or token cap of its own.
UNBOUNDED = 2**62


@dataclass(frozen=True)
class WindowSettings:
    max_size: int
    max_tokens: int
    max_bytes: int
    max_wait_seconds: float


def estimate_bytes(job: Request) -> int:
    """An upper bound of the bytes ``job``'s request adds to a batch file."""
    return len(orjson.dumps(build_messages(job))) + LINE_OVERHEAD_BYTES


def window_settings(
    catalog: Catalog, *, model: str, mode: JobMode, limits: ProviderLimits | None
) -> WindowSettings:
    """A window's flush thresholds: the model's settings, capped by the provider's limits."""
    config = catalog.model(model)
    if mode in (JobMode.realtime, JobMode.flex):  # both leave as concurrent calls
        return WindowSettings(
            config.realtime_max_size, UNBOUNDED, UNBOUNDED, config.realtime_max_wait_seconds
        )
    max_size, max_bytes = config.max_size, config.max_bytes or UNBOUNDED
    if limits is not None:
        max_size = min(max_size, limits.max_requests)
        max_bytes = min(max_bytes, limits.max_bytes)
    return WindowSettings(max_size, config.max_tokens, max_bytes, config.max_wait_seconds)


def fitting_prefix(
    estimates: Sequence[tuple[int | None, int | None]], *, max_tokens: int, max_bytes: int
) -> tuple[int, int, int]:
    """How many of the leading (tokens, bytes) estimates fit under both caps, with their sums.

    A single job over a cap still counts, alone: it has to leave in some batch.
    """
    count = tokens = nbytes = 0
    for job_tokens, job_bytes in estimates:
        job_tokens, job_bytes = job_tokens or 0, job_bytes or 0
        if count and (tokens + job_tokens > max_tokens or nbytes + job_bytes > max_bytes):
            break
        count, tokens, nbytes = count + 1, tokens + job_tokens, nbytes + job_bytes
    return count, tokens, nbytes
