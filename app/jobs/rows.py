"""Typed rows that other domains hand to ``app/jobs/transitions``.

Each attribute is named after the ``jobs`` column it fills, so a transition turns a list of
rows into one array per column (``app.kit.db.attribute_arrays``) without a per-row copy.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from app.kit.prompts import ChatMessage
from app.models import CacheMode, JobMode, JobState, RequestedMode


class NewJob(NamedTuple):
    """A job to insert, one attribute per column. A named tuple, not a dataclass: a bulk
    submission builds ten thousand of them, and a tuple is the cheapest object to build."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    group_id: uuid.UUID | None
    state: JobState
    prompt: str | None
    document: str | None
    instruction: str | None
    system: str | None
    max_output_tokens: int | None
    model_hint: str | None
    tier_hint: str | None
    metadata: dict[str, Any]
    idempotency_key: str | None
    webhook_url: str | None
    cache_hit: bool
    temperature: float | None
    cache_mode: CacheMode
    semantic_cache: bool | None
    requested_mode: RequestedMode
    deadline: datetime | None
    priority: int
    created_at: datetime
    updated_at: datetime
    # Set by routing when the job skips the cache (routed at submission); None while queued.
    provider: str | None
    model: str | None
    mode: JobMode | None
    route_reason: str | None
    estimated_tokens: int | None
    estimated_bytes: int | None
    routed_at: datetime | None
    error: str | None
    completed_at: datetime | None
    provider_batch_id: uuid.UUID | None
    # SHA-256 of the submitted job, for keyed jobs (a reused key with another payload is refused).
    request_hash: str | None = None
    # A conversation's earlier turns (``messages``), between ``system`` and ``prompt``.
    history: list[ChatMessage] | None = None
    # Why it was routed (set with the route columns) and the job's own quality target.
    routing: dict[str, Any] | None = None
    quality_target: float | None = None
    # The expected cost budgets count while the job is in flight (routing's estimate).
    reserved_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RoutedJob:
    """What ingest decided for a queued job: ``waiting`` in its window, or ``failed`` when no
    model can take it. A waiting job may lead its identical requests (``coalesce_leader``)
    or wait on the one that does (``coalesced_with``, app/intake/coalescing.py); every row
    ingest writes sets both, so a job ingested again drops what it was before."""

    id: uuid.UUID
    state: JobState
    provider: str | None
    model: str | None
    mode: JobMode | None
    route_reason: str | None
    estimated_tokens: int
    estimated_bytes: int | None
    routed_at: datetime | None
    error: str | None
    completed_at: datetime | None
    routing: dict[str, Any] | None
    cache_key: str | None
    updated_at: datetime
    coalesce_leader: bool = field(default=False, kw_only=True)
    coalesced_with: uuid.UUID | None = field(default=None, kw_only=True)
    # Routing's expected cost, reserved against the tenant's budgets while in flight.
    reserved_usd: Decimal | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class CachedAnswer(RoutedJob):
    """A routed job that ingest answered from the cache (``completed``)."""

    cache_hit: bool
    cached_from_job_id: uuid.UUID
    cache_similarity: float
    result: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    naive_cost_usd: Decimal
