from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.models import ApiKey, Tenant


def get_by_name(session: Session, name: str) -> Tenant | None:
    return session.scalars(select(Tenant).where(Tenant.name == name)).one_or_none()


def get_valid_key(
    session: Session, key_hash: str, *, now: datetime
) -> tuple[ApiKey, Tenant] | None:
    """The key with this digest and its tenant, unless it is revoked or expired."""
    query = (
        select(ApiKey, Tenant)
        .join(Tenant, ApiKey.tenant_id == Tenant.id)
        .where(
            ApiKey.key_hash == key_hash,
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
        )
    )
    row = session.execute(query).one_or_none()
    return None if row is None else (row[0], row[1])


def get_key(session: Session, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
    query = select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


def list_keys(session: Session, *, tenant_id: uuid.UUID) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)
    return list(session.scalars(query))


def list_named(session: Session, *, tenant_id: uuid.UUID, name: str) -> list[ApiKey]:
    query = select(ApiKey).where(
        ApiKey.tenant_id == tenant_id, ApiKey.name == name, ApiKey.revoked_at.is_(None)
    )
    return list(session.scalars(query))


def touch(session: Session, *, key_id: uuid.UUID, now: datetime, every: timedelta) -> None:
    """Set ``last_used_at`` unless it was set less than ``every`` ago (one write a minute)."""
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - every),
        )
        .values(last_used_at=now)
    )


def baseline_models(session: Session, *, tenant_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    query = select(Tenant.id, Tenant.baseline_model).where(
        Tenant.id.in_(tenant_ids), Tenant.baseline_model.is_not(None)
    )
    return {tenant_id: str(model) for tenant_id, model in session.execute(query)}


def share_weights(session: Session, *, tenant_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    query = select(Tenant.id, Tenant.share_weight).where(Tenant.id.in_(tenant_ids))
    return {tenant_id: int(weight) for tenant_id, weight in session.execute(query)}


def routing_settings(
    session: Session, *, tenant_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[str | None, float | None]]:
    query = select(Tenant.id, Tenant.routing_strategy, Tenant.quality_target).where(
        Tenant.id.in_(tenant_ids)
    )
    return {tenant_id: (strategy, target) for tenant_id, strategy, target in session.execute(query)}


def budgets(
    session: Session, *, tenant_ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[Decimal | None, Decimal | None, str | None]]:
    query = select(
        Tenant.id, Tenant.daily_budget_usd, Tenant.monthly_budget_usd, Tenant.budget_policy
    ).where(
        Tenant.id.in_(tenant_ids),
        or_(Tenant.daily_budget_usd.is_not(None), Tenant.monthly_budget_usd.is_not(None)),
    )
    return {row[0]: (row[1], row[2], row[3]) for row in session.execute(query)}
