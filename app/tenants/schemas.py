from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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
