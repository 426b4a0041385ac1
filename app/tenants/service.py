"""Tenants and their API keys. Keys are shown once and stored as SHA-256 digests.

A tenant has any number of keys, each with a name, scopes (``app/tenants/scopes.py``), an
optional expiry and ``last_used_at``. Revoking a key refuses it at once; rotating one issues
a successor with the same name and scopes and keeps the old one valid for a grace period.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from app.kit.db import session_scope
from app.kit.errors import Conflict, NotFound
from app.models import ApiKey, Tenant, utcnow
from app.tenants import repository
from app.tenants.scopes import TENANT_SCOPES, Scope

KEY_PREFIX = "thr_"
# last_used_at is written at most this often per key, so authentication stays a read.
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the tenant and the key it authenticated with."""

    tenant: Tenant
    key_id: uuid.UUID
    scopes: frozenset[Scope]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_tenant(session: Session, *, name: str) -> Tenant | None:
    return repository.get_by_name(session, name)


def get_or_create_tenant(session: Session, *, name: str) -> Tenant:
    """Return the tenant called ``name``, creating it if needed."""
    tenant = repository.get_by_name(session, name)
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_tenant(session: Session, *, name: str) -> Tenant:
    """A new tenant; 409 when the name is taken (keys of an existing tenant are made with
    ``create_key``, never as a side effect)."""
    if repository.get_by_name(session, name) is not None:
        raise Conflict(f"tenant {name!r} exists; add a key with `thrifty key create --tenant`")
    return get_or_create_tenant(session, name=name)


def set_limits(
    session: Session,
    *,
    tenant: Tenant,
    requests_per_minute: int | None,
    jobs_per_minute: int | None,
    max_unfinished_jobs: int | None,
) -> None:
    """Override the settings' limits for one tenant (None: back to the setting)."""
    tenant.requests_per_minute = requests_per_minute
    tenant.jobs_per_minute = jobs_per_minute
    tenant.max_unfinished_jobs = max_unfinished_jobs
    session.flush()


def create_key(
    session: Session,
    *,
    tenant: Tenant,
    name: str = "default",
    scopes: Iterable[Scope] = TENANT_SCOPES,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key row and the key in plain text (the only time it exists)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        tenant_id=tenant.id,
        key_hash=hash_key(key),
        prefix=key[:12],
        name=name,
        scopes=sorted(Scope(scope).value for scope in set(scopes)),
        expires_at=expires_at,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row, key


def issue_api_key(session: Session, *, tenant: Tenant) -> str:
    """A new key with every tenant scope, in plain text."""
    return create_key(session, tenant=tenant)[1]


def authenticate(session: Session, *, key: str) -> Principal | None:
    """Who owns ``key``, or None for an unknown, revoked or expired key."""
    now = utcnow()
    found = repository.get_valid_key(session, hash_key(key), now=now)
    if found is None:
        return None
    row, tenant = found
    if row.last_used_at is None or row.last_used_at < now - TOUCH_EVERY:
        # Its own short transaction: the request's would hold the row lock to its end, and
        # concurrent requests with this key would wait on it.
        with session_scope() as touch_session:
            repository.touch(touch_session, key_id=row.id, now=now, every=TOUCH_EVERY)
    return Principal(tenant=tenant, key_id=row.id, scopes=frozenset(Scope(s) for s in row.scopes))


def ensure_named_key(session: Session, *, tenant: Tenant, name: str, key: str | None) -> str:
    """``key`` if it is a valid key of ``tenant`` called ``name``; else a new such key, and
    every other live key of that name revoked: the one key a development stack keeps."""
    if key:
        found = repository.get_valid_key(session, hash_key(key), now=utcnow())
        if found is not None and found[0].tenant_id == tenant.id and found[0].name == name:
            return key
    row, key = create_key(session, tenant=tenant, name=name)
    revoke_named(session, tenant_id=tenant.id, name=name, keep=row.id)
    return key


def list_keys(session: Session, *, tenant_id: uuid.UUID) -> list[ApiKey]:
    return repository.list_keys(session, tenant_id=tenant_id)


def _key(session: Session, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    row = repository.get_key(session, tenant_id=tenant_id, key_id=key_id)
    if row is None:
        raise NotFound(f"API key {key_id} not found")
    return row


def revoke_key(session: Session, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """Refuse the key from now on (a second revocation keeps the first time)."""
    row = _key(session, tenant_id=tenant_id, key_id=key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def revoke_named(session: Session, *, tenant_id: uuid.UUID, name: str, keep: uuid.UUID) -> None:
    """Revoke every live key called ``name`` but ``keep`` (the dev stack's one key)."""
    now = utcnow()
    for row in repository.list_named(session, tenant_id=tenant_id, name=name):
        if row.id != keep:
            row.revoked_at = now
    session.flush()


def rotate_key(
    session: Session, *, tenant: Tenant, key_id: uuid.UUID, grace: timedelta
) -> tuple[ApiKey, str]:
    """A successor with the same name, scopes and expiry; the old key stays valid for
    ``grace`` (or until its own expiry, if sooner), then is refused."""
    old = _key(session, tenant_id=tenant.id, key_id=key_id)
    now = utcnow()
    if old.revoked_at is not None or (old.expires_at is not None and old.expires_at <= now):
        raise Conflict(f"API key {key_id} is revoked or expired; create a new one")
    new, key = create_key(
        session,
        tenant=tenant,
        name=old.name,
        scopes=[Scope(s) for s in old.scopes],
        expires_at=old.expires_at,
    )
    ends = now + grace
    old.expires_at = ends if old.expires_at is None else min(old.expires_at, ends)
    session.flush()
    return new, key


def set_baseline_model(session: Session, *, tenant: Tenant, model: str | None) -> None:
    """What the tenant's naive cost is priced on (None: the catalog's naive_model). The
    caller checks the model is in the catalog."""
    tenant.baseline_model = model
    session.flush()


def baseline_models(session: Session, *, tenant_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The tenants that have their own baseline model, and that model."""
    if not tenant_ids:
        return {}
    return repository.baseline_models(session, tenant_ids=sorted(set(tenant_ids)))


def share_weights(session: Session, *, tenant_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Each tenant's weight in the fair share of a window (1 unless set; at least 1)."""
    found = repository.share_weights(session, tenant_ids=tenant_ids)
    return {tenant_id: max(1, found.get(tenant_id, 1)) for tenant_id in tenant_ids}


def set_routing(
    session: Session, *, tenant: Tenant, strategy: str | None, quality_target: float | None
) -> None:
    """The tenant's routing strategy and quality target (None: the default). The caller
    checks the strategy can run (``app.routing.strategies``)."""
    tenant.routing_strategy = strategy
    tenant.quality_target = quality_target
    session.flush()


def set_budgets(
    session: Session,
    *,
    tenant: Tenant,
    daily_usd: Decimal | None,
    monthly_usd: Decimal | None,
    policy: str | None,
) -> None:
    """The tenant's budgets (None: none) and budget policy (None: the default, reject)."""
    tenant.daily_budget_usd = daily_usd
    tenant.monthly_budget_usd = monthly_usd
    tenant.budget_policy = policy
    session.flush()


def budgets(
    session: Session, *, tenant_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[Decimal | None, Decimal | None, str | None]]:
    """The tenants among ``tenant_ids`` that have a budget: daily, monthly, policy."""
    if not tenant_ids:
        return {}
    return repository.budgets(session, tenant_ids=sorted(set(tenant_ids)))


def routing_settings(
    session: Session, *, tenant_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str | None, float | None]]:
    """Each tenant's stored routing strategy and quality target (None where unset)."""
    if not tenant_ids:
        return {}
    return repository.routing_settings(session, tenant_ids=sorted(set(tenant_ids)))
