"""The authenticated tenant of a request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.kit.deps import SessionDep
from app.kit.errors import Unauthorized
from app.models import Tenant
from app.tenants import service as tenant_service

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer thr_...`")


def current_tenant(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Tenant:
    if credentials is None:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    tenant = tenant_service.authenticate(session, key=credentials.credentials)
    if tenant is None:
        raise Unauthorized("invalid or revoked API key")
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
