"""The exact-match cache layer: a hash of the request's scope and normalised text.

Scope is tenant, model tier, instruction, system prompt and output limit, so an answer is only
reused for the same question asked the same way by the same tenant.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.cache import repository
from app.jobs.prompts import user_content
from app.kit.text import normalise
from app.models import CacheEntry, Job


@dataclass(frozen=True)
class CacheWrite:
    tenant_id: uuid.UUID
    cache_key: str
    model: str
    result: str
    source_job_id: uuid.UUID
    input_tokens: int
    output_tokens: int


def cache_key(job: Job, *, tier: str) -> str:
    """Key for ``job`` routed to a model of ``tier`` (the tenant is a column beside it)."""
    scope = {
        "tier": tier,
        "system": normalise(job.system) if job.system else None,
        "max_output_tokens": job.max_output_tokens,
        "text": normalise(user_content(job)),
    }
    return hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()


def lookup_many(
    session: Session, *, tenant_id: uuid.UUID, keys: list[str]
) -> dict[str, CacheEntry]:
    """Entries of ``tenant_id`` for any of ``keys``; hits are counted."""
    found = repository.find_many(session, tenant_id=tenant_id, keys=sorted(set(keys)))
    repository.count_hits(session, entry_ids=[entry.id for entry in found.values()])
    return found


def store_many(session: Session, writes: list[CacheWrite]) -> None:
    """Remember answers; the first answer stored under a key stays."""
    repository.insert_many(
        session,
        [
            {
                "id": uuid.uuid4(),
                "tenant_id": w.tenant_id,
                "cache_key": w.cache_key,
                "model": w.model,
                "result": w.result,
                "source_job_id": w.source_job_id,
                "input_tokens": w.input_tokens,
                "output_tokens": w.output_tokens,
                "hit_count": 0,
            }
            for w in writes
        ],
    )
