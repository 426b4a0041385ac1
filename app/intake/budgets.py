"""Budgets at the door and at ingest: the ledger's spend and the cost reserved by jobs in
flight, against a tenant's budgets.

Intake asks the ledger (``ledger_service.spent_usd``, answered from the rollups) what the
tenant spent this UTC day and month, and ``app/jobs/load.py`` what its jobs in flight have
reserved (``jobs.reserved_usd``, each job's expected cost at routing); routing
(``app/routing/budgets.py``) decides. A submission of a tenant with a budget holds a
per-tenant transaction-scoped advisory lock from its check to its commit, so two
concurrent submissions cannot both pass on the same room. A tenant without a budget costs
no query and takes no lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.intake.placement import Placement
from app.jobs import load as jobs_load
from app.jobs.schemas import JobIn
from app.kit.errors import TooManyRequests
from app.ledger import service as ledger_service
from app.models import Tenant
from app.routing.budgets import Allowance, BudgetPolicy, Exceeded, TenantBudget, allowance
from app.tenants import service as tenant_service

# The advisory lock space of budget checks (the first key of pg_advisory_xact_lock(int, int)).
_LOCK_SPACE = 0x7468_7262  # "thrb"


def _lock(session: Session, tenant_id: uuid.UUID) -> None:
    """Wait for any other submission of this tenant's to commit or roll back; held until
    this transaction ends (its jobs are then stored, with their reservations)."""
    key = int.from_bytes(tenant_id.bytes[:4], "big", signed=True)
    session.execute(select(func.pg_advisory_xact_lock(_LOCK_SPACE, key)))


def _allowance(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    budget: TenantBudget,
    now: datetime,
    excluding: Sequence[uuid.UUID] = (),
) -> Allowance | None:
    if not budget.limited:
        return None
    return allowance(
        budget,
        now=now,
        spent_since=lambda since: ledger_service.spent_usd(
            session, tenant_id=tenant_id, since=since
        ),
        reserved_usd=jobs_load.reserved_usd(session, tenant_id=tenant_id, excluding=excluding),
    )


def open_allowance(session: Session, *, tenant: Tenant, now: datetime) -> Allowance | None:
    """A submission's start: for a tenant with a budget, take its lock, then what it may
    still commit (None without a budget: nothing is read or locked)."""
    budget = TenantBudget.of(tenant.daily_budget_usd, tenant.monthly_budget_usd,
                             tenant.budget_policy)  # fmt: skip
    if not budget.limited:
        return None
    _lock(session, tenant.id)
    return _allowance(session, tenant_id=tenant.id, budget=budget, now=now)


def _refuse(exceeded: Exceeded, *, pinned: str | None, now: datetime) -> TooManyRequests:
    why = (
        f"a job pinned to {pinned} cannot be downgraded: leave `model` out (jobs then go to "
        "cheaper models) or wait until it resets"
        if pinned is not None
        else "this submission is refused whole; new jobs are refused until it resets"
    )
    return TooManyRequests(
        f"{exceeded.describe()}; {why} at {exceeded.resets_at.isoformat()} "
        "(raise the budget with PUT /v1/routing/settings)",
        retry_after=exceeded.retry_after(now),
        type_="budget_exceeded",
    )


def admit(
    room: Allowance,
    *,
    items: Sequence[JobIn],
    placements: Sequence[Placement],
    now: datetime,
    downgrade: Callable[[int, Exceeded], Placement],
) -> list[Placement]:
    """Walk a submission in order against ``room``: jobs whose expected cost
    (``reserved_usd``) fits keep their placement. Past the budget, a ``reject`` tenant's
    submission (or any with a pinned job past it) is refused whole: 429 ``budget_exceeded``
    with ``Retry-After`` to the period's end, nothing stored before touched. A
    ``downgrade`` tenant's jobs past it are placed again by ``downgrade`` (index, budget):
    cheaper models, whose expected cost is what they then use up."""
    admitted: list[Placement] = []
    for index, (item, placement) in enumerate(zip(items, placements, strict=True)):
        cost = placement.reserved_usd or Decimal(0)
        if room.fits(cost):
            room.take(cost)
            admitted.append(placement)
            continue
        exceeded = room.exceeded(cost)
        if room.policy == BudgetPolicy.reject or item.model is not None:
            raise _refuse(exceeded, pinned=item.model, now=now)
        moved = downgrade(index, exceeded)
        room.take(moved.reserved_usd or Decimal(0))
        admitted.append(moved)
    return admitted


def downgrading(
    session: Session, *, jobs: Sequence[tuple[uuid.UUID, uuid.UUID]], now: datetime
) -> dict[uuid.UUID, Allowance]:
    """Ingest: per tenant with the ``downgrade`` policy and a budget among ``jobs`` (job id,
    tenant id), what it may still commit, not counting these jobs' own reservations (they are
    routed now, and use up the allowance again in order). A ``reject`` tenant's queued jobs
    were accepted and are routed as usual."""
    found: dict[uuid.UUID, Allowance] = {}
    tenant_ids = list(dict.fromkeys(tenant_id for _, tenant_id in jobs))
    for tenant_id, stored in tenant_service.budgets(session, tenant_ids=tenant_ids).items():
        budget = TenantBudget.of(*stored)
        if budget.policy != BudgetPolicy.downgrade:
            continue
        own = [job_id for job_id, owner in jobs if owner == tenant_id]
        room = _allowance(session, tenant_id=tenant_id, budget=budget, now=now, excluding=own)
        if room is not None:
            found[tenant_id] = room
    return found
