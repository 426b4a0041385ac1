from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

from app.models import JobState


class JobIn(BaseModel):
    """One job: a `prompt`, or a `document` plus an `instruction` (default "summarise")."""

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
    max_output_tokens: int | None = Field(default=None, ge=1, le=32_768)
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

    @model_validator(mode="after")
    def _prompt_or_document(self) -> JobIn:
        if (self.prompt is None) == (self.document is None):
            raise ValueError("give exactly one of `prompt` or `document`")
        if self.instruction is not None and self.document is None:
            raise ValueError("`instruction` applies to a `document`; put it in the `prompt`")
        if self.model is not None and self.tier is not None:
            raise ValueError("give `model` or `tier`, not both")
        return self


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
    cost_usd: Decimal | None = Field(description="What this job cost (zero for a cache hit).")
    naive_cost_usd: Decimal | None = Field(
        description="List price of the catalog's naive model, called one request at a time."
    )
    saved_usd: Decimal | None


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
    mode: str | None
    route_reason: str | None
    cache_hit: bool
    cached_from_job_id: uuid.UUID | None
    usage: Usage
    cost: Cost
    timings: Timings
    metadata: dict[str, Any]
    idempotency_key: str | None


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
