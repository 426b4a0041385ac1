"""Batching: windows of waiting jobs become provider batches, and their results come back.

The domain's public surface, what other layers call; each step lives in its own module:
``windows`` (thresholds and estimates), ``collector`` (windows → pending batches, and the
arrival flush), ``submitter`` (pending batch → provider), ``results`` (polls and outcomes) and
``sweeper`` (stuck work). Every step re-reads state from Postgres and acts only on rows still
in the state it expects, so each one is safe to run twice, concurrently, or after a crash.
"""

from __future__ import annotations

from app.batching.collector import Arrival, collect, flush_on_arrival, flush_windows
from app.batching.results import dispatch_polls, poll_batch
from app.batching.submitter import submit_batch
from app.batching.sweeper import sweep
from app.batching.windows import estimate_bytes

__all__ = [
    "Arrival",
    "collect",
    "dispatch_polls",
    "estimate_bytes",
    "flush_on_arrival",
    "flush_windows",
    "poll_batch",
    "submit_batch",
    "sweep",
]
