"""FastAPI dependencies shared by every domain's endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.kit.db import get_sessionmaker
from app.kit.errors import Unauthorized
from app.models import Tenant
from app.routing.catalog import Catalog, get_catalog
from app.tenants import service as tenant_service


def get_session() -> Iterator[Session]:
    """A session per request; endpoints that write commit it, anything else is rolled back."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]

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
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
