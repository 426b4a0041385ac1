"""Budgets at the door and at ingest: the ledger's spend against a tenant's budgets.

Intake asks the ledger (``ledger_service.spent_usd``, answered from the rollups) what the
tenant spent this UTC day and month; routing (``app/routing/budgets.py``) decides. A tenant
without a budget costs no query.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from app.jobs.schemas import JobIn
from app.kit.errors import TooManyRequests
from app.ledger import service as ledger_service
from app.models import Tenant
from app.routing.budgets import BudgetPolicy, Exceeded, TenantBudget, check
from app.tenants import service as tenant_service


def reached(
    session: Session, *, tenant_id: uuid.UUID, budget: TenantBudget, now: datetime
) -> Exceeded | None:
    """The budget ``tenant_id`` has reached, if any."""
    if not budget.limited:
        return None
    return check(
        budget,
        now=now,
        spent_since=lambda since: ledger_service.spent_usd(
            session, tenant_id=tenant_id, since=since
        ),
    )


def admit(
    session: Session, *, tenant: Tenant, items: Sequence[JobIn], now: datetime
) -> Exceeded | None:
    """Refuse a new submission of a tenant over budget with the ``reject`` policy, or one
    pinning a model with ``downgrade`` (a pinned model cannot be downgraded): 429
    ``budget_exceeded`` with ``Retry-After`` to the period's end. Returns the budget a
    ``downgrade`` tenant has reached (its jobs go to cheaper models), else None. Nothing
    stored before is touched."""
    budget = TenantBudget.of(tenant.daily_budget_usd, tenant.monthly_budget_usd,
                             tenant.budget_policy)  # fmt: skip
    exceeded = reached(session, tenant_id=tenant.id, budget=budget, now=now)
    if exceeded is None:
        return None
    pinned = [item.model for item in items if item.model is not None]
    if budget.policy == BudgetPolicy.reject or pinned:
        why = (
            "new jobs are refused until it resets"
            if budget.policy == BudgetPolicy.reject
            else f"a job pinned to {pinned[0]} cannot be downgraded: leave `model` out "
            "(jobs then go to cheaper models) or wait until it resets"
        )
        raise TooManyRequests(
            f"{exceeded.describe()}; {why} at {exceeded.resets_at.isoformat()} "
            "(raise the budget with PUT /v1/routing/settings)",
            retry_after=exceeded.retry_after(now),
            type_="budget_exceeded",
        )
    return exceeded


def downgrading(
    session: Session, *, tenant_ids: Sequence[uuid.UUID], now: datetime
) -> dict[uuid.UUID, Exceeded]:
    """Ingest: the tenants among ``tenant_ids`` with the ``downgrade`` policy that have
    reached a budget (their jobs go to cheaper models); a ``reject`` tenant's queued jobs
    were accepted and are routed as usual."""
    found: dict[uuid.UUID, Exceeded] = {}
    for tenant_id, stored in tenant_service.budgets(session, tenant_ids=list(tenant_ids)).items():
        budget = TenantBudget.of(*stored)
        if budget.policy != BudgetPolicy.downgrade:
            continue
        exceeded = reached(session, tenant_id=tenant_id, budget=budget, now=now)
        if exceeded is not None:
            found[tenant_id] = exceeded
    return found
