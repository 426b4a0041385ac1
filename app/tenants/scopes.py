"""What an API key may do: one scope per kind of access, as polar's ``auth/scope.py``."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    jobs_write = "jobs:write"
    jobs_read = "jobs:read"
    webhooks_write = "webhooks:write"
    cache_write = "cache:write"
    routing_write = "routing:write"
    stats_read = "stats:read"
    keys_write = "keys:write"
    # Cross-tenant views (metrics); never granted through the API, only by the CLI.
    operator = "operator"


# What a new tenant's key gets unless scopes are named: everything but the operator scope.
TENANT_SCOPES: frozenset[Scope] = frozenset(Scope) - {Scope.operator}
