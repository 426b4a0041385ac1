from __future__ import annotations

from typing import cast

from fastapi import APIRouter

from app.cache import service as cache_service
from app.cache.schemas import CacheSettingsIn, CacheSettingsOut, InvalidateIn, InvalidateOut
from app.kit.deps import SessionDep
from app.kit.errors import API_ERROR_CODES, error_responses
from app.kit.json_input import StrictJSONRoute
from app.tenants.deps import CacheWrite

router = APIRouter(prefix="/v1/cache", tags=["cache"], route_class=StrictJSONRoute)

ERRORS = error_responses(*API_ERROR_CODES)


def _out(policy: cache_service.Policy, entries: int) -> CacheSettingsOut:
    return CacheSettingsOut(
        semantic_enabled=policy.semantic_enabled,
        prompt_threshold=policy.prompt_threshold,
        document_threshold=policy.document_threshold,
        ttl_seconds=policy.ttl_seconds,
        max_entries=policy.max_entries,
        entries=entries,
    )


@router.get("/settings", responses=ERRORS)
def get_cache_settings(session: SessionDep, tenant: CacheWrite) -> CacheSettingsOut:
    """The tenant's effective cache settings and its entry count."""
    policy = cache_service.policy(session, tenant_id=tenant.id)
    return _out(policy, cache_service.count_entries(session, tenant_id=tenant.id))


@router.put("/settings", responses=ERRORS)
def put_cache_settings(
    body: CacheSettingsIn, session: SessionDep, tenant: CacheWrite
) -> CacheSettingsOut:
    """Change the tenant's threshold, TTL or entry limit; limits apply at once."""
    # CacheSettingsIn has exactly the fields of PolicyChanges; unset ones stay out.
    changes = cast(cache_service.PolicyChanges, body.model_dump(exclude_unset=True))
    policy = cache_service.update_policy(session, tenant_id=tenant.id, values=changes)
    cache_service.enforce_limits(session, tenant_id=tenant.id)
    entries = cache_service.count_entries(session, tenant_id=tenant.id)
    return _out(policy, entries)


@router.post("/invalidate", responses=ERRORS)
def invalidate(body: InvalidateIn, session: SessionDep, tenant: CacheWrite) -> InvalidateOut:
    """Delete the tenant's entries by id, by the job that produced them, or all of them."""
    count = cache_service.invalidate(
        session,
        tenant_id=tenant.id,
        entry_ids=body.entry_ids,
        source_job_ids=body.source_job_ids,
        everything=body.all,
    )
    return InvalidateOut(invalidated=count)
