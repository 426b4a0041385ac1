from __future__ import annotations

import uuid

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

# The columns are 32-bit integers.
INT32_MAX = 2**31 - 1


class CacheSettingsIn(BaseModel):
    """Fields left out are unchanged; ``null`` resets one to the service default."""

    model_config = ConfigDict(extra="forbid")

    semantic_enabled: StrictBool | None = Field(default=None, description="Use the semantic layer.")
    prompt_threshold: StrictFloat | None = Field(
        default=None, ge=0.5, le=1, description="Least cosine similarity for a prompt hit."
    )
    document_threshold: StrictFloat | None = Field(
        default=None, ge=0.5, le=1, description="Least cosine similarity for a document hit."
    )
    ttl_seconds: StrictInt | None = Field(
        default=None, gt=0, le=INT32_MAX, description="Entries expire after this."
    )
    max_entries: StrictInt | None = Field(
        default=None,
        gt=0,
        le=INT32_MAX,
        description="Least recently used entries are evicted past this.",
    )


class CacheSettingsOut(BaseModel):
    semantic_enabled: bool
    prompt_threshold: float
    document_threshold: float
    ttl_seconds: int | None
    max_entries: int
    entries: int = Field(description="Entries the tenant has now.")


class InvalidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entry_ids: list[uuid.UUID] = Field(default_factory=list, max_length=10_000)
    source_job_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=10_000,
        description="Entries written from these jobs' answers (a hit's `cached_from_job_id`).",
    )
    all: StrictBool = Field(default=False, description="Every entry of the tenant.")

    @model_validator(mode="after")
    def _something(self) -> InvalidateIn:
        if not (self.entry_ids or self.source_job_ids or self.all):
            raise ValueError("give `entry_ids`, `source_job_ids` or `all: true`")
        return self


class InvalidateOut(BaseModel):
    invalidated: int
