"""Writing the cache: answers stored with the vector computed at ingest, then each tenant's
TTL and entry limit; invalidation by the tenant."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.cache import job_embeddings, repository
from app.cache.keys import request_text
from app.cache.policy import policy
from app.models import CacheMode, utcnow


@dataclass(frozen=True)
class CacheWrite:
    """A provider's answer to one job, to be remembered under the job's cache key.

    ``cache_mode`` and the job's ``prompt``/``document`` come from the caller, which holds the
    job: the cache does not read the ``jobs`` table.
    """

    tenant_id: uuid.UUID
    cache_key: str
    model: str
    result: str
    source_job_id: uuid.UUID
    input_tokens: int
    output_tokens: int
    cache_mode: CacheMode
    prompt: str | None
    document: str | None


def store_many(session: Session, writes: list[CacheWrite]) -> None:
    """Remember answers; the first answer stored under a key stays, unless the job asked for
    ``cache: refresh``. The embedding computed at ingest is stored with the answer (never
    recomputed); then each tenant's TTL and entry limit are enforced."""
    if not writes:
        return
    now = utcnow()
    keep: list[repository.AnswerRow] = []
    replace: list[repository.AnswerRow] = []
    for w in writes:
        row = repository.AnswerRow(
            id=uuid.uuid4(),
            tenant_id=w.tenant_id,
            cache_key=w.cache_key,
            model=w.model,
            result=w.result,
            source_job_id=w.source_job_id,
            input_tokens=w.input_tokens,
            output_tokens=w.output_tokens,
            request_text=request_text(prompt=w.prompt, document=w.document),
        )
        (replace if w.cache_mode == CacheMode.refresh else keep).append(row)
    repository.insert_answers(session, _first_per_key(keep), now=now)
    repository.insert_answers(session, _first_per_key(replace), now=now, replace=True)
    job_embeddings.delete_job_embeddings(session, job_ids=[w.source_job_id for w in writes])
    for tenant_id in {w.tenant_id for w in writes}:
        enforce_limits(session, tenant_id=tenant_id, now=now)


def _first_per_key(rows: list[repository.AnswerRow]) -> list[repository.AnswerRow]:
    seen: dict[tuple[uuid.UUID, str], repository.AnswerRow] = {}
    for row in rows:
        seen.setdefault((row["tenant_id"], row["cache_key"]), row)
    return list(seen.values())


def enforce_limits(session: Session, *, tenant_id: uuid.UUID, now: datetime | None = None) -> int:
    """Drop the tenant's expired entries, then the least recently used over its limit."""
    rules = policy(session, tenant_id=tenant_id)
    since = rules.since(now or utcnow())
    removed = repository.delete_expired(session, tenant_id=tenant_id, before=since) if since else 0
    excess = repository.count_entries(session, tenant_id=tenant_id) - rules.max_entries
    if excess > 0:
        removed += repository.evict_least_recent(session, tenant_id=tenant_id, count=excess)
    return removed


def invalidate(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    entry_ids: list[uuid.UUID],
    source_job_ids: list[uuid.UUID],
    everything: bool = False,
) -> int:
    """Delete the tenant's entries by id or by the job that produced them (or all of them)."""
    return repository.invalidate(
        session,
        tenant_id=tenant_id,
        entry_ids=entry_ids,
        source_job_ids=source_job_ids,
        everything=everything,
    )


def count_entries(session: Session, *, tenant_id: uuid.UUID) -> int:
    """How many entries the tenant has now."""
    return repository.count_entries(session, tenant_id=tenant_id)
