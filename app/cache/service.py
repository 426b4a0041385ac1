"""The cache, as other domains call it: an exact layer (a hash of the request's scope and
normalised text), then a semantic layer (pgvector HNSW, cosine) whose candidates must pass a
second check.

Scope is tenant, model tier, instruction, system prompt, output limit and temperature, so an
answer is only reused for the same question asked the same way by the same tenant. The
semantic layer compares only entries of the same tenant and scope, and a candidate is
returned only when ``app.cache.verify`` (or a trained verifier) agrees it is the same request.

Where each part lives: ``keys`` (cache key, scope, request text), ``policy`` (a tenant's
settings), ``verification`` (the second check), ``lookup`` (ingest's read), ``store`` (the
poller's write, limits, invalidation), ``repository`` (the queries).
"""

from __future__ import annotations

from app.cache.inflight import NearQuery, in_flight_matches
from app.cache.keys import cache_key
from app.cache.lookup import Hit, Lookup, lookup_jobs
from app.cache.policy import Policy, PolicyChanges, policy, update_policy
from app.cache.store import CacheWrite, count_entries, enforce_limits, invalidate, store_many

__all__ = [
    "CacheWrite",
    "Hit",
    "Lookup",
    "NearQuery",
    "Policy",
    "PolicyChanges",
    "cache_key",
    "count_entries",
    "enforce_limits",
    "in_flight_matches",
    "invalidate",
    "lookup_jobs",
    "policy",
    "store_many",
    "update_policy",
]
