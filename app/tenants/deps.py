"""Who a request is and what it may do: one ``Annotated`` dependency per scope.

After polar's per-domain ``Authenticator`` aliases: an endpoint names the access it needs
(``tenant: JobsWrite``) and a key without one of the accepted scopes gets 403. A missing,
unknown, revoked or expired key gets 401. Every authenticated request counts against the
tenant's requests-per-minute limit (429 past it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.config import get_settings
from app.kit.deps import SessionDep
from app.kit.errors import Forbidden, Unauthorized
from app.kit.ratelimit import RateLimiterDep
from app.models import Tenant
from app.tenants import service as tenant_service
from app.tenants.scopes import Scope
from app.tenants.service import Principal

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer thr_...`")


class Authenticator:
    """A dependency that authenticates the key and requires one of ``required_scopes``."""

    def __init__(self, *, required_scopes: Iterable[Scope]) -> None:
        self.required_scopes = frozenset(required_scopes)

    def __call__(
        self,
        session: SessionDep,
        limiter: RateLimiterDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
        principal = tenant_service.authenticate(session, key=credentials.credentials)
        if principal is None:
            raise Unauthorized("invalid, revoked or expired API key")
        if not principal.scopes & self.required_scopes:
            needed = " or ".join(sorted(self.required_scopes))
            raise Forbidden(f"this API key lacks the scope this endpoint needs: {needed}")
        tenant = principal.tenant
        per_minute = tenant.requests_per_minute or get_settings().tenant_requests_per_minute
        limiter.hit("requests", str(tenant.id), per_minute=per_minute)
        return principal


class TenantAuthenticator(Authenticator):
    """The same check, answering the tenant (what most endpoints need)."""

    def __call__(  # type: ignore[override]
        self,
        session: SessionDep,
        limiter: RateLimiterDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Tenant:
        return super().__call__(session, limiter, credentials).tenant


# A write scope also reads what it writes (polar's `web_default`-style any-of sets).
JobsWrite = Annotated[Tenant, Depends(TenantAuthenticator(required_scopes={Scope.jobs_write}))]
JobsRead = Annotated[
    Tenant, Depends(TenantAuthenticator(required_scopes={Scope.jobs_read, Scope.jobs_write}))
]
WebhooksWrite = Annotated[
    Tenant, Depends(TenantAuthenticator(required_scopes={Scope.webhooks_write}))
]
CacheWrite = Annotated[Tenant, Depends(TenantAuthenticator(required_scopes={Scope.cache_write}))]
RoutingWrite = Annotated[
    Tenant, Depends(TenantAuthenticator(required_scopes={Scope.routing_write}))
]
StatsRead = Annotated[Tenant, Depends(TenantAuthenticator(required_scopes={Scope.stats_read}))]
# Stats of the key's tenant, or with the operator scope every tenant's (the caller decides).
StatsReader = Annotated[
    Principal, Depends(Authenticator(required_scopes={Scope.stats_read, Scope.operator}))
]
KeysWrite = Annotated[Principal, Depends(Authenticator(required_scopes={Scope.keys_write}))]
OperatorScope = Annotated[Principal, Depends(Authenticator(required_scopes={Scope.operator}))]
