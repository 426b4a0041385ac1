from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SerializeAsAny

from app.models import DeliveryState

EventType = Literal["job.completed", "job.failed", "group.completed"]
EVENT_TYPES: tuple[EventType, ...] = ("job.completed", "job.failed", "group.completed")
JobEventType = Literal["job.completed", "job.failed"]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="Receives a signed POST per event.")
    events: list[EventType] = Field(
        default_factory=lambda: list(EVENT_TYPES),
        min_length=1,
        description="Events to receive; all of them by default.",
    )
    description: str | None = Field(default=None, max_length=500)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret also signs deliveries."
    )


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The signing secret (`whsec_...`). Shown only now.")


class SecretOut(BaseModel):
    secret: str = Field(description="Signing secret (`whsec_...`) of the current generation.")
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret also signs deliveries."
    )


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    address: str | None
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    next_attempt_at: datetime | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    message_id: str = Field(description="The `webhook-id` header; the same on every attempt.")
    event: str
    endpoint_id: uuid.UUID | None = Field(description="None for a job's own `webhook_url`.")
    job_id: uuid.UUID | None
    group_id: uuid.UUID | None
    url: str
    state: DeliveryState
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryDetail(DeliveryOut):
    body: str = Field(description="The exact body that is signed and sent.")
    attempts: list[AttemptOut]


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page.")


# The bodies POSTed to receivers ------------------------------------------------------------


class JobEventBody(BaseModel):
    """``job.completed`` / ``job.failed``: ``data`` is the job as ``GET /v1/jobs/{id}`` returns
    it, except that a result over the inline limit is left out (``result_omitted``)."""

    type: JobEventType
    timestamp: datetime
    url: str = Field(description="The job in the API, with its result.")
    result_omitted: bool = Field(description="True when `data.result` was too large to inline.")
    data: SerializeAsAny[BaseModel]


class GroupEventBody(BaseModel):
    """``group.completed``: ``data`` is the group as ``GET /v1/groups/{id}`` returns it."""

    type: Literal["group.completed"]
    timestamp: datetime
    url: str = Field(description="The group in the API.")
    results_url: str = Field(description="Every job of the group, as a JSONL stream.")
    data: SerializeAsAny[BaseModel]
