"""Who receives webhooks: a tenant's endpoints and the signing secrets.

An endpoint subscribes a URL to some events and holds its own secret; deliveries to a job's
own ``webhook_url`` are signed with the tenant's secret (``webhook_secrets``), created on
first use. Rotating a secret keeps the previous one signing for a grace period.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.delivery import addresses, repository, signing
from app.delivery.config import WebhookConfig
from app.delivery.schemas import EndpointCreated, EndpointIn, EndpointOut, SecretOut
from app.kit.errors import Conflict, NotFound, ValidationFailed
from app.models import Tenant, WebhookEndpoint, WebhookSecret, utcnow

# What holds a signing secret: an endpoint, or a tenant (for jobs' own webhook_url).
SecretHolder = WebhookEndpoint | WebhookSecret


def check_url(url: str, *, config: WebhookConfig | None = None, field: str = "url") -> None:
    """Refuse (422) a URL that resolves to an address deliveries may not go to."""
    config = config or WebhookConfig.from_settings()
    try:
        addresses.check(url, config.policy)
    except addresses.RefusedURL as exc:
        raise ValidationFailed(
            f"{field} {url} is refused: {exc}",
            details=[{"loc": [field], "message": str(exc), "type": "url_refused"}],
        ) from exc


def _endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        description=endpoint.description,
        created_at=endpoint.created_at,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
    )


def _secret_out(holder: SecretHolder) -> SecretOut:
    return SecretOut(
        secret=holder.secret, previous_secret_expires_at=holder.previous_secret_expires_at
    )


def create_endpoint(
    session: Session, *, tenant: Tenant, data: EndpointIn, config: WebhookConfig | None = None
) -> EndpointCreated:
    """Register a receiver; its generated secret is in the answer and never shown again."""
    url = str(data.url)
    check_url(url, config=config)
    # One subscription per URL: a second would deliver every event twice.
    repository.lock_endpoint_url(session, tenant_id=tenant.id, url=url)
    existing = repository.endpoint_by_url(session, tenant_id=tenant.id, url=url)
    if existing is not None:
        raise Conflict(
            f"{url} is already registered as endpoint {existing.id}; change its events by "
            "deleting and registering it again",
            details=[{"loc": ["url"], "endpoint_id": str(existing.id), "type": "duplicate_url"}],
        )
    endpoint = WebhookEndpoint(
        tenant_id=tenant.id,
        url=url,
        events=sorted(set(data.events)),
        description=data.description,
        secret=signing.generate_secret(),
    )
    session.add(endpoint)
    session.flush()
    return EndpointCreated(**_endpoint_out(endpoint).model_dump(), secret=endpoint.secret)


def list_endpoints(session: Session, *, tenant: Tenant) -> list[EndpointOut]:
    """The tenant's endpoints, oldest first (without secrets)."""
    return [_endpoint_out(e) for e in repository.endpoints_of(session, tenant_id=tenant.id)]


def _endpoint(
    session: Session, *, tenant: Tenant, endpoint_id: uuid.UUID, lock: bool = False
) -> WebhookEndpoint:
    endpoint = repository.get_endpoint(
        session, tenant_id=tenant.id, endpoint_id=endpoint_id, lock=lock
    )
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def get_endpoint(session: Session, *, tenant: Tenant, endpoint_id: uuid.UUID) -> EndpointOut:
    """One of the tenant's endpoints (404 for another tenant's)."""
    return _endpoint_out(_endpoint(session, tenant=tenant, endpoint_id=endpoint_id))


def delete_endpoint(session: Session, *, tenant: Tenant, endpoint_id: uuid.UUID) -> None:
    """Remove an endpoint together with its deliveries and their attempts."""
    session.delete(_endpoint(session, tenant=tenant, endpoint_id=endpoint_id, lock=True))
    session.flush()


def enable_endpoint(session: Session, *, tenant: Tenant, endpoint_id: uuid.UUID) -> EndpointOut:
    """Re-enable an endpoint that was disabled (after a 410 Gone, for instance)."""
    endpoint = _endpoint(session, tenant=tenant, endpoint_id=endpoint_id, lock=True)
    endpoint.disabled_at = None
    endpoint.disabled_reason = None
    session.flush()
    return _endpoint_out(endpoint)


def disable_endpoint(session: Session, endpoint: WebhookEndpoint, *, reason: str) -> None:
    """Stop delivering to an endpoint: its pending deliveries are dead-lettered."""
    endpoint.disabled_at = utcnow()
    endpoint.disabled_reason = reason
    repository.kill_pending(session, endpoint_id=endpoint.id, reason=f"endpoint disabled: {reason}")


def _rotate(holder: SecretHolder, *, config: WebhookConfig) -> None:
    now = utcnow()
    if config.secret_grace_seconds > 0:
        holder.previous_secret = holder.secret
        holder.previous_secret_expires_at = now + timedelta(seconds=config.secret_grace_seconds)
    else:
        holder.previous_secret = None
        holder.previous_secret_expires_at = None
    holder.secret = signing.generate_secret()


def rotate_endpoint_secret(
    session: Session,
    *,
    tenant: Tenant,
    endpoint_id: uuid.UUID,
    config: WebhookConfig | None = None,
) -> SecretOut:
    """A new secret; the old one keeps signing (a second signature) for the grace period."""
    endpoint = _endpoint(session, tenant=tenant, endpoint_id=endpoint_id, lock=True)
    _rotate(endpoint, config=config or WebhookConfig.from_settings())
    session.flush()
    return _secret_out(endpoint)


def tenant_secret_holder(
    session: Session, *, tenant_id: uuid.UUID, lock: bool = False
) -> WebhookSecret:
    """The tenant's secret row, created (race-free) on first use."""
    holder = repository.tenant_secret(session, tenant_id=tenant_id, lock=lock)
    if holder is None:
        repository.insert_tenant_secret(
            session, tenant_id=tenant_id, secret=signing.generate_secret()
        )
        holder = repository.tenant_secret(session, tenant_id=tenant_id, lock=lock)
    assert holder is not None
    return holder


def tenant_secret(session: Session, *, tenant: Tenant) -> SecretOut:
    """The secret signing deliveries to jobs' own ``webhook_url``, created on first use."""
    return _secret_out(tenant_secret_holder(session, tenant_id=tenant.id))


def rotate_tenant_secret(
    session: Session, *, tenant: Tenant, config: WebhookConfig | None = None
) -> SecretOut:
    """Rotate the tenant's secret, with the same grace period as endpoints."""
    holder = tenant_secret_holder(session, tenant_id=tenant.id, lock=True)
    _rotate(holder, config=config or WebhookConfig.from_settings())
    session.flush()
    return _secret_out(holder)


def signing_secrets(holder: SecretHolder, *, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its grace."""
    secrets_ = [holder.secret]
    expires = holder.previous_secret_expires_at
    if holder.previous_secret and expires is not None and expires > now:
        secrets_.append(holder.previous_secret)
    return secrets_
