from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from app.kit.money import Money
from app.kit.prompts import ChatMessage, split_messages
from app.ledger.schemas import SavingsByLayer
from app.models import CacheMode, JobMode, JobState, RequestedMode
from app.routing.schemas import QualityTarget, RoutingOut

DEADLINE_RANGE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


class MessageIn(BaseModel):
    """One chat message: leading `system` messages, then the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=10_000_000)


class JobIn(BaseModel):
    """One job: a `prompt`, a `document` plus an `instruction` (default "summarise"), or a
    chat conversation as `messages`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"document": "Long article text ...", "instruction": "summarise"},
                {"prompt": "Explain the difference between TCP and UDP.", "tier": "economy"},
            ]
        },
    )

    prompt: str | None = Field(default=None, min_length=1, description="The full prompt.")
    document: str | None = Field(
        default=None, min_length=1, description="A document to apply `instruction` to."
    )
    instruction: str | None = Field(
        default=None,
        min_length=1,
        max_length=4000,
        description="For documents: a named instruction (summarise, tldr, headline, keywords) "
        "or free text. Defaults to summarise.",
    )
    system: str | None = Field(default=None, max_length=20_000, description="A system prompt.")
    messages: list[MessageIn] | None = Field(
        default=None,
        min_length=1,
        description="A chat conversation instead of `prompt`: optional leading `system` "
        "messages, then user and assistant turns, ending with a `user` message. The whole "
        "conversation is the cache scope; the last user message is what is routed and "
        "compared.",
    )
    max_output_tokens: StrictInt | None = Field(default=None, ge=1, le=32_768)
    model: str | None = Field(default=None, description="Pin a model from the catalog.")
    tier: str | None = Field(default=None, description="Pick the cheapest model of a tier.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Returned unchanged.")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Resubmitting a key returns the existing job instead of a new one.",
    )
    webhook_url: AnyHttpUrl | None = Field(default=None, description="Notified when done.")
    temperature: StrictFloat | None = Field(
        default=None,
        ge=0,
        le=2,
        description="Sampling temperature; part of the cache scope. Above 0 the semantic cache "
        "is skipped unless `semantic_cache` is true.",
    )
    cache: CacheMode = Field(
        default=CacheMode.default,
        description="`default`: answer from the cache when possible; `bypass`: neither read "
        "nor write the cache; `refresh`: do not read, and replace the cached answer.",
    )
    semantic_cache: StrictBool | None = Field(
        default=None,
        description="Force the semantic (similar-request) layer on or off; by default it is on "
        "for temperature 0 (or unset) and off above.",
    )
    mode: RequestedMode = Field(
        default=RequestedMode.auto,
        description="`batch`: the provider's discounted Batch API; `realtime`: concurrent "
        "realtime calls, for latency-sensitive jobs; `flex`: OpenAI's flex tier (batch "
        "prices, minutes of latency; OpenAI models only, a pinned other model is a 422); "
        "`auto`: batch when `deadline` (if any) leaves room for the provider's completion "
        "window, flex when it leaves room for flex's expected latency, realtime otherwise.",
    )
    deadline: AwareDatetime | None = Field(
        default=None,
        description="When the result is needed by (ISO 8601 with a time zone); a time "
        "already past is refused (422).",
    )
    priority: StrictInt = Field(
        default=0, ge=-1000, le=1000, description="Higher leaves its window first."
    )
    quality_target: QualityTarget | None = Field(
        default=None,
        description="For a tenant routed by `learned`: the fraction of the strong model's "
        "quality to keep, in (0, 1]; overrides the tenant's.",
    )

    @field_validator("prompt", "document", "instruction")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        # A whitespace-only prompt would be sent, and billed, for nothing.
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline_is_a_string(cls, value: object) -> object:
        # No Unix timestamps: a number is more likely a duration sent by mistake.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 date-time string with a time zone")
        return value

    @field_validator("deadline")
    @classmethod
    def _deadline_in_range(cls, value: datetime | None) -> datetime | None:
        # Postgres and Python both store it only within this range, once in UTC.
        if value is not None:
            try:
                utc = value.astimezone(UTC)
            except OverflowError:
                utc = None
            if utc is None or not DEADLINE_RANGE[0] <= utc <= DEADLINE_RANGE[1]:
                raise ValueError("must be between 2000-01-01 and 9000-01-01 (UTC)")
            if utc < datetime.now(UTC):
                # A result needed before now cannot be delivered in time by any mode.
                raise ValueError("is in the past: a deadline must be a time still to come")
        return value

    _history: list[ChatMessage] | None = PrivateAttr(default=None)

    @property
    def history(self) -> list[ChatMessage] | None:
        """The turns between the system messages and the last user message (``messages``)."""
        return self._history

    @model_validator(mode="after")
    def _prompt_or_document(self) -> JobIn:
        if self.messages is not None:
            self._split_messages()
        if (self.prompt is None) == (self.document is None):
            raise ValueError("give exactly one of `prompt`, `document` or `messages`")
        if self.instruction is not None and self.document is None:
            raise ValueError("`instruction` applies to a `document`; put it in the `prompt`")
        if self.model is not None and self.tier is not None:
            raise ValueError("give `model` or `tier`, not both")
        return self

    def _split_messages(self) -> None:
        """Store a conversation as its system prompt, history and last user message."""
        assert self.messages is not None
        if self.prompt is not None or self.document is not None or self.system is not None:
            raise ValueError("`messages` replaces `prompt`, `document` and `system`; give one")
        roles = [m.role for m in self.messages]
        if roles[-1] != "user":
            raise ValueError("the last of `messages` must be a `user` message")
        lead = next(i for i, role in enumerate(roles) if role != "system")
        if "system" in roles[lead:]:
            raise ValueError("`system` messages must come before the conversation")
        if not self.messages[-1].content.strip():
            raise ValueError("the last `user` message must not be blank")
        system, history, prompt = split_messages(
            [ChatMessage(role=m.role, content=m.content) for m in self.messages]
        )
        self.system, self.prompt, self._history = system, prompt, history


class SubmittedJob(BaseModel):
    id: uuid.UUID
    state: JobState
    idempotency_key: str | None
    existing: bool = Field(description="True when an earlier job with this key was returned.")


class SubmitResponse(BaseModel):
    group_id: uuid.UUID | None = Field(description="Set when a list was submitted.")
    count: int
    jobs: list[SubmittedJob]


class Usage(BaseModel):
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None


class Cost(BaseModel):
    cost_usd: Money | None = Field(description="What this job cost (zero for a cache hit).")
    naive_cost_usd: Money | None = Field(
        description="List price of the tenant's baseline model (default the catalog's "
        "naive_model), called one request at a time."
    )
    saved_usd: Money | None = Field(
        description="naive_cost_usd - cost_usd: the savings of every layer (routing, batching, "
        "prompt caching, and for a cache hit the cache: what the job would have cost routed "
        "and batched)."
    )
    savings_usd: SavingsByLayer | None = Field(
        default=None,
        description="saved_usd by layer, from the job's cost record (they add up to it); "
        "null until the job has ended, and in a group's totals (GET /v1/stats?group_by=group "
        "has them).",
    )


class Timings(BaseModel):
    created_at: datetime
    routed_at: datetime | None
    submitted_at: datetime | None
    completed_at: datetime | None
    queue_seconds: float | None = Field(description="From acceptance to provider submission.")
    total_seconds: float | None = Field(description="From acceptance to completion.")


class JobOut(BaseModel):
    id: uuid.UUID
    group_id: uuid.UUID | None
    state: JobState
    result: str | None
    error: str | None
    model: str | None
    provider: str | None
    mode: JobMode | None
    route_reason: str | None
    routing: RoutingOut | None = Field(
        default=None, description="Why it was routed: strategy, score, threshold, candidates."
    )
    cache_hit: bool
    cached_from_job_id: uuid.UUID | None
    coalesced_with: uuid.UUID | None = Field(
        default=None,
        description="An identical request of yours (same exact cache key) that was live when "
        "this job was ingested: this job waits on it and, once `completed`, took its result "
        "(cost 0; the avoided cost is `savings_usd.coalescing`). Null for a job sent itself.",
    )
    cache_similarity: float | None = Field(
        default=None,
        description="For a cache hit: cosine similarity to the cached request (1.0: exact).",
    )
    usage: Usage
    cost: Cost
    timings: Timings
    metadata: dict[str, Any]
    idempotency_key: str | None
    requested_mode: RequestedMode = Field(
        default=RequestedMode.auto, description="The `mode` asked for."
    )
    deadline: datetime | None = None
    priority: int = 0
    attempts: int = Field(default=0, description="Provider attempts that failed retryably.")


class GroupOut(BaseModel):
    id: uuid.UUID
    size: int
    created_at: datetime
    counts: dict[JobState, int] = Field(description="Jobs by state.")
    done: bool = Field(description="True when every job reached a terminal state.")
    cache_hits: int
    usage: Usage
    cost: Cost


class JobPage(BaseModel):
    data: list[JobOut]
    next_after: uuid.UUID | None = Field(description="Pass as `after` for the next page.")


class GroupCancelled(BaseModel):
    cancelled: int = Field(description="Jobs that had not ended and are now cancelled.")
    group: GroupOut
