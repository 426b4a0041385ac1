from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from app.tenants.scopes import TENANT_SCOPES, Scope


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="What the key is for.")
    scopes: list[Scope] = Field(
        default_factory=lambda: sorted(TENANT_SCOPES),
        min_length=1,
        max_length=len(Scope),
        description="What the key may do; at most the scopes of the key that creates it.",
    )
    expires_at: AwareDatetime | None = Field(
        default=None, description="After this the key is refused (ISO 8601 with a time zone)."
    )

    @field_validator("expires_at")
    @classmethod
    def _storable(cls, value: datetime | None) -> datetime | None:
        # In UTC it must still be a date Python and Postgres hold (year 1 to 9999).
        if value is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise ValueError("out of range once in UTC") from None
            if value.astimezone(UTC).year >= 9999:
                raise ValueError("must be before the year 9999")
        return value


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the key, to tell keys apart.")
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret (`thr_...`). Shown only now.")
