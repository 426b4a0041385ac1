from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, Numeric, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.prompts import ChatMessage
from app.models.base import Base, CreatedAtMixin, IdMixin, StrEnumText, utcnow


class JobState(enum.StrEnum):
    queued = "queued"  # accepted and committed, waiting for ingest
    waiting = "waiting"  # routed; waiting in its model's window
    batched = "batched"  # claimed into a provider batch that is not yet submitted
    submitted = "submitted"  # part of a live provider batch
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATES = frozenset({JobState.completed, JobState.failed, JobState.cancelled})


class JobMode(enum.StrEnum):
    """How a routed job reaches its provider."""

    batch = "batch"  # the provider's discounted Batch API
    realtime = "realtime"  # concurrent realtime calls, for latency-sensitive jobs
    # OpenAI's flex tier: realtime calls with ``service_tier: "flex"``, batch prices, minutes
    # of latency, and a 429 "resource unavailable" when OpenAI has no capacity.
    flex = "flex"


class RequestedMode(enum.StrEnum):
    """The mode a client asks for; ``auto`` lets the deadline decide."""

    auto = "auto"
    batch = "batch"
    realtime = "realtime"
    flex = "flex"


class CacheMode(enum.StrEnum):
    default = "default"  # answer from the cache when possible, store the answer
    bypass = "bypass"  # neither read nor write the cache
    refresh = "refresh"  # do not read; replace the cached answer


class Job(IdMixin, CreatedAtMixin, Base):
    """One prompt (or document plus instruction) and everything that happened to it."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index(
            "uq_jobs_tenant_idempotency_key",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        # Partial: each state change writes an entry in every index whose predicate the new
        # row version matches, so an index only holds the versions someone looks up.
        # The collector scans waiting jobs per window, in claiming order.
        Index(
            "ix_jobs_window",
            "provider",
            "model",
            "mode",
            "priority",
            "routed_at",
            postgresql_where=text("state = 'waiting'"),
        ),
        # The fair share of a window: each tenant's waiting jobs, in claiming order.
        Index(
            "ix_jobs_window_tenant",
            "provider",
            "model",
            "mode",
            "tenant_id",
            "priority",
            "routed_at",
            postgresql_where=text("state = 'waiting'"),
        ),
        # Ingest's fair share: the tenants with queued jobs, each one's oldest first.
        Index(
            "ix_jobs_queued_tenant",
            "tenant_id",
            "created_at",
            postgresql_where=text("state = 'queued'"),
        ),
        # Budgets: the reserved cost of a tenant's jobs in flight (app/jobs/load.py).
        Index(
            "ix_jobs_tenant_reserved",
            "tenant_id",
            postgresql_where=text(
                "reserved_usd IS NOT NULL AND state IN ('queued', 'waiting', 'batched', "
                "'submitted')"
            ),
            postgresql_include=["reserved_usd"],
        ),
        # The sweeper scans jobs that have not ended, by state and age.
        Index(
            "ix_jobs_open_state_updated_at",
            "state",
            "updated_at",
            postgresql_where=text("state IN ('queued', 'waiting', 'batched', 'submitted')"),
        ),
        # Coalescing (app/intake/coalescing.py): at most one live leader per exact cache key
        # and tenant, across every ingest process; and the followers waiting on a leader.
        Index(
            "uq_jobs_live_leader",
            "tenant_id",
            "cache_key",
            unique=True,
            postgresql_where=text(
                "coalesce_leader AND state IN ('waiting', 'batched', 'submitted')"
            ),
        ),
        Index(
            "ix_jobs_coalesced_with",
            "coalesced_with",
            postgresql_where=text("coalesced_with IS NOT NULL AND state = 'waiting'"),
        ),
        # Deadline escalation (app/batching/escalation.py): batch-mode jobs in a batch that
        # has not ended, by deadline.
        Index(
            "ix_jobs_batch_deadline",
            "provider",
            "deadline",
            postgresql_where=text(
                "deadline IS NOT NULL AND mode = 'batch' AND state IN ('batched', 'submitted')"
            ),
        ),
        Index("ix_jobs_group_id", "group_id", postgresql_where=text("group_id IS NOT NULL")),
        Index(
            "ix_jobs_provider_batch_id",
            "provider_batch_id",
            postgresql_where=text("provider_batch_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("job_groups.id", ondelete="CASCADE")
    )
    state: Mapped[JobState] = mapped_column(
        Enum(JobState, name="job_state", values_callable=lambda e: [m.value for m in e]),
        default=JobState.queued,
    )

    prompt: Mapped[str | None] = mapped_column(Text)
    document: Mapped[str | None] = mapped_column(Text)
    instruction: Mapped[str | None] = mapped_column(Text)
    system: Mapped[str | None] = mapped_column(Text)
    # A chat conversation's turns between the system prompt and the last user message
    # (``prompt``), as ``[{"role": ..., "content": ...}]`` (app/kit/prompts.py).
    history: Mapped[list[ChatMessage] | None] = mapped_column(JSONB)
    max_output_tokens: Mapped[int | None]
    model_hint: Mapped[str | None] = mapped_column(String(200))
    tier_hint: Mapped[str | None] = mapped_column(String(50))
    job_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # SHA-256 of the submitted job, so a key reused with another payload is refused.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # Generation parameter (part of the cache scope) and cache controls, see app/cache.
    temperature: Mapped[float | None]
    cache_mode: Mapped[CacheMode] = mapped_column(
        StrEnumText(CacheMode, 10), default=CacheMode.default
    )
    semantic_cache: Mapped[bool | None]  # None: on at temperature 0 only; True/False: forced
    # Collector controls (app/batching): the mode asked for, the time the result is needed by,
    # and the order within a window (higher leaves first).
    requested_mode: Mapped[RequestedMode] = mapped_column(
        StrEnumText(RequestedMode, 20), default=RequestedMode.auto, server_default="auto"
    )
    deadline: Mapped[datetime | None]
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    # Provider attempts that ended in a retryable failure (expired, rate-limited, 5xx).
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")

    # Set by the router.
    provider: Mapped[str | None] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(String(200))
    mode: Mapped[JobMode | None] = mapped_column(StrEnumText(JobMode, 20))
    route_reason: Mapped[str | None] = mapped_column(Text)
    # Why it was routed (strategy, score, threshold, candidates, expected quality and cost).
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Overrides the tenant's quality target for the learned router.
    quality_target: Mapped[float | None]
    estimated_tokens: Mapped[int | None]
    # Upper bound of the bytes this request adds to a provider batch file (windows' max_bytes).
    estimated_bytes: Mapped[int | None]
    # Hash of the request's cache scope and normalised text; the poller writes the answer under it.
    cache_key: Mapped[str | None] = mapped_column(String(64))
    # Coalescing: this job is sent for every identical live request of its tenant (the
    # unique ``uq_jobs_live_leader`` holds one per cache key); or the leader this job waits
    # on (``waiting``) and, once ``completed``, the job whose result it took.
    coalesce_leader: Mapped[bool] = mapped_column(default=False, server_default="false")
    coalesced_with: Mapped[uuid.UUID | None]

    provider_batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("provider_batches.id", ondelete="SET NULL")
    )

    # Set when the job ends.
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    cache_hit: Mapped[bool] = mapped_column(default=False)
    cached_from_job_id: Mapped[uuid.UUID | None]
    # For a cache hit: cosine similarity to the cached request (1.0 for an exact match).
    cache_similarity: Mapped[float | None]
    input_tokens: Mapped[int | None]
    output_tokens: Mapped[int | None]
    # Of input_tokens, those read from / written to the provider's prompt cache.
    cached_input_tokens: Mapped[int | None]
    cache_write_tokens: Mapped[int | None]
    # What the job cost and what it would have cost naively, exactly as its cost record in the
    # ledger has them (app/ledger; 12 decimal places).
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(24, 12))
    naive_cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(24, 12))
    # The expected cost budgets count while the job is in flight (routing's
    # ``expected_cost_usd``); cleared when the actual cost lands.
    reserved_usd: Mapped[Decimal | None] = mapped_column(Numeric(24, 12))

    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    routed_at: Mapped[datetime | None]
    submitted_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
