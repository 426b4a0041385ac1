"""The tenant's API keys: create (the secret shown once), list, revoke, rotate."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Response

from app.config import get_settings
from app.kit.deps import SessionDep
from app.kit.errors import API_ERROR_CODES, Forbidden, ValidationFailed, error_responses
from app.kit.json_input import StrictJSONRoute
from app.models import ApiKey, utcnow
from app.tenants import service as tenant_service
from app.tenants.deps import KeysWrite
from app.tenants.schemas import KeyCreated, KeyIn, KeyOut
from app.tenants.scopes import Scope

router = APIRouter(prefix="/v1/keys", tags=["keys"], route_class=StrictJSONRoute)

ERRORS = error_responses(*API_ERROR_CODES)


def _out(row: ApiKey) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=[Scope(s) for s in row.scopes],
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _created(row: ApiKey, key: str) -> KeyCreated:
    return KeyCreated(**_out(row).model_dump(), key=key)


@router.post("", status_code=201, response_model=KeyCreated, responses=ERRORS)
def create_key(data: KeyIn, principal: KeysWrite, session: SessionDep) -> KeyCreated:
    """A new key for the tenant; the answer holds the secret as `key`, shown only this once.

    A key can grant only scopes it has itself, and never `operator` (the CLI grants that)."""
    scopes = set(data.scopes)
    if Scope.operator in scopes:
        raise Forbidden("the operator scope is granted only with `thrifty key create`")
    if not scopes <= principal.scopes:
        missing = ", ".join(sorted(scopes - principal.scopes))
        raise Forbidden(f"a key cannot grant scopes it lacks: {missing}")
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise ValidationFailed("expires_at: must be in the future")
    row, key = tenant_service.create_key(
        session,
        tenant=principal.tenant,
        name=data.name,
        scopes=scopes,
        expires_at=data.expires_at,
    )
    return _created(row, key)


@router.get("", response_model=list[KeyOut], responses=ERRORS)
def list_keys(principal: KeysWrite, session: SessionDep) -> list[KeyOut]:
    """Every key of the tenant, revoked and expired ones included (without secrets)."""
    return [_out(row) for row in tenant_service.list_keys(session, tenant_id=principal.tenant.id)]


@router.delete("/{key_id}", status_code=204, responses=ERRORS)
def revoke_key(key_id: uuid.UUID, principal: KeysWrite, session: SessionDep) -> Response:
    """Revoke a key: it is refused (401) from the next request on."""
    tenant_service.revoke_key(session, tenant_id=principal.tenant.id, key_id=key_id)
    return Response(status_code=204)


@router.post("/{key_id}/rotate", status_code=201, response_model=KeyCreated, responses=ERRORS)
def rotate_key(key_id: uuid.UUID, principal: KeysWrite, session: SessionDep) -> KeyCreated:
    """A successor with the same name, scopes and expiry; the old key stays valid for
    `THRIFTY_API_KEY_ROTATION_GRACE_SECONDS` (24 h), then is refused."""
    grace = timedelta(seconds=get_settings().api_key_rotation_grace_seconds)
    row, key = tenant_service.rotate_key(
        session, tenant=principal.tenant, key_id=key_id, grace=grace
    )
    return _created(row, key)
