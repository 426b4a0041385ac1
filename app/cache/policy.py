"""A tenant's cache policy: its own settings (``cache_settings``) over the service defaults."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypedDict

from sqlalchemy.orm import Session

from app.cache import repository
from app.cache.keys import DOCUMENT
from app.config import get_settings
from app.models import CacheSettings


@dataclass(frozen=True)
class Policy:
    semantic_enabled: bool
    prompt_threshold: float
    document_threshold: float
    ttl_seconds: int | None
    max_entries: int

    def since(self, now: datetime) -> datetime | None:
        return now - timedelta(seconds=self.ttl_seconds) if self.ttl_seconds else None

    def threshold(self, kind: str) -> float:
        return self.document_threshold if kind == DOCUMENT else self.prompt_threshold


class PolicyChanges(TypedDict, total=False):
    """Settings to change; a key given as ``None`` resets that setting to the default."""

    semantic_enabled: bool | None
    prompt_threshold: float | None
    document_threshold: float | None
    ttl_seconds: int | None
    max_entries: int | None


def policy(session: Session, *, tenant_id: uuid.UUID) -> Policy:
    """The tenant's cache settings, with service defaults for what it did not set."""
    settings = get_settings()
    row = repository.get_settings(session, tenant_id=tenant_id)
    return Policy(
        semantic_enabled=row.semantic_enabled if row else True,
        prompt_threshold=_pick(
            row.prompt_threshold if row else None, settings.cache_prompt_threshold
        ),
        document_threshold=_pick(
            row.document_threshold if row else None, settings.cache_document_threshold
        ),
        ttl_seconds=row.ttl_seconds if row and row.ttl_seconds else settings.cache_ttl_seconds,
        max_entries=row.max_entries if row and row.max_entries else settings.cache_max_entries,
    )


def _pick(value: float | None, default: float) -> float:
    return default if value is None else value


def update_policy(session: Session, *, tenant_id: uuid.UUID, values: PolicyChanges) -> Policy:
    """Set some of the tenant's cache settings (``None`` resets one to the default)."""
    row = repository.get_settings(session, tenant_id=tenant_id)
    if row is None:
        row = CacheSettings(tenant_id=tenant_id, semantic_enabled=True)
        session.add(row)
    for name, value in values.items():
        setattr(row, name, True if name == "semantic_enabled" and value is None else value)
    session.flush()
    return policy(session, tenant_id=tenant_id)
