"""Tenants and their API keys. Keys are shown once and stored as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy.orm import Session

from app.models import ApiKey, Tenant
from app.tenants import repository

KEY_PREFIX = "thr_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_tenant(session: Session, *, name: str) -> Tenant:
    """Return the tenant called ``name``, creating it if needed."""
    tenant = repository.get_by_name(session, name)
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def issue_api_key(session: Session, *, tenant: Tenant) -> str:
    """Create a new key for ``tenant`` and return it in plain text (the only time it exists)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:12]))
    session.flush()
    return key


def authenticate(session: Session, *, key: str) -> Tenant | None:
    """The tenant owning ``key``, or None for an unknown or revoked key."""
    return repository.get_by_key_hash(session, hash_key(key))
