from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import CacheEntry


def find_many(session: Session, *, tenant_id: uuid.UUID, keys: list[str]) -> dict[str, CacheEntry]:
    query = select(CacheEntry).where(
        CacheEntry.tenant_id == tenant_id, CacheEntry.cache_key.in_(keys)
    )
    return {entry.cache_key: entry for entry in session.scalars(query)}


def count_hits(session: Session, *, entry_ids: list[uuid.UUID]) -> None:
    for entry_id in entry_ids:
        session.execute(
            update(CacheEntry)
            .where(CacheEntry.id == entry_id)
            .values(hit_count=CacheEntry.hit_count + 1)
        )


def insert_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert entries; an existing entry for the same tenant and key is kept."""
    if rows:
        statement = insert(CacheEntry).values(rows)
        session.execute(statement.on_conflict_do_nothing(index_elements=["tenant_id", "cache_key"]))
