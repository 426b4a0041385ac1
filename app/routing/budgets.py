"""Tenant budgets: per UTC day and per UTC month, over the ledger's actual costs.

A tenant over a budget is either refused new work (``reject``: a 429 ``budget_exceeded``
with ``Retry-After`` to the period's end) or kept on cheaper models (``downgrade``): as
litellm's budget limiter does, the budget is a filter on the candidate models, here the
models cheaper for the job than the one the strategy chose. What counts against a budget
is the ledger's actual spend (``ledger_service.spent_usd``) plus the cost reserved by the
tenant's jobs in flight (each job's expected cost at routing, ``jobs.reserved_usd``), both
asked by intake (routing reads no other domain's tables). A submission is walked in order
against what is left (``Allowance``): the jobs that fit keep their route; past the budget
a ``reject`` tenant's submission is refused whole and a ``downgrade`` tenant's remaining
jobs go to cheaper models.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.catalog.catalog import Catalog, ModelConfig
from app.routing.service import Route


class BudgetPolicy(enum.StrEnum):
    reject = "reject"
    downgrade = "downgrade"


DEFAULT_POLICY = BudgetPolicy.reject


@dataclass(frozen=True)
class TenantBudget:
    """A tenant's budgets in USD (None: none) and what happens past one."""

    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None
    policy: BudgetPolicy = DEFAULT_POLICY

    @classmethod
    def of(cls, daily: Decimal | None, monthly: Decimal | None, policy: str | None) -> TenantBudget:
        return cls(daily, monthly, BudgetPolicy(policy) if policy else DEFAULT_POLICY)

    @property
    def limited(self) -> bool:
        return self.daily_usd is not None or self.monthly_usd is not None


def _usd(amount: Decimal) -> str:
    return format(amount.quantize(Decimal("0.000001")), "f")


@dataclass(frozen=True)
class Exceeded:
    """A budget the tenant has reached or a job would pass: which, how much was spent and
    reserved by jobs in flight, how much the submission adds, when it resets."""

    period: str  # "daily" | "monthly"
    budget_usd: Decimal
    spent_usd: Decimal
    resets_at: datetime
    reserved_usd: Decimal = Decimal(0)
    adding_usd: Decimal = Decimal(0)

    def describe(self) -> str:
        figures = f"{_usd(self.spent_usd)} USD spent"
        if self.reserved_usd:
            figures += f", {_usd(self.reserved_usd)} USD reserved by jobs in flight"
        if self.adding_usd:
            figures += f", {_usd(self.adding_usd)} USD expected for these jobs"
        reached = self.spent_usd + self.reserved_usd >= self.budget_usd
        return (
            f"{self.period} budget of {format(self.budget_usd.normalize(), 'f')} USD "
            f"{'reached' if reached else 'would be passed'} ({figures})"
        )

    def retry_after(self, now: datetime) -> int:
        """Whole seconds until the period ends (at least 1)."""
        return max(1, math.ceil((self.resets_at - now).total_seconds()))


def period_starts(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """Each budget period containing ``now`` (UTC): its start and its end."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return {"daily": (day, day + timedelta(days=1)), "monthly": (month, next_month)}


class Allowance:
    """What a tenant with a budget may still commit: the least room over its periods (budget
    less spent less reserved in flight), used up job by job in order."""

    def __init__(self, policy: BudgetPolicy, tightest: Exceeded) -> None:
        self.policy = policy
        self.tightest = tightest  # the period with the least room (its figures)
        self.remaining = tightest.budget_usd - tightest.spent_usd - tightest.reserved_usd
        self.used = Decimal(0)

    def fits(self, cost: Decimal) -> bool:
        return self.used + cost <= self.remaining

    def take(self, cost: Decimal) -> None:
        self.used += cost

    def exceeded(self, cost: Decimal) -> Exceeded:
        """The budget a job of ``cost`` would pass, with what this submission adds."""
        return replace(self.tightest, adding_usd=self.used + cost)


def allowance(
    budget: TenantBudget,
    *,
    now: datetime,
    spent_since: Callable[[datetime], Decimal],
    reserved_usd: Decimal,
) -> Allowance | None:
    """The tenant's ``Allowance`` (None without a budget). On equal room, the monthly
    period (it resets last). ``spent_since`` asks the ledger; it is not called for a period
    without a budget."""
    tightest: Exceeded | None = None
    for period, limit in (("daily", budget.daily_usd), ("monthly", budget.monthly_usd)):
        if limit is None:
            continue
        start, end = period_starts(now)[period]
        found = Exceeded(period, limit, spent_since(start), end, reserved_usd)
        room = limit - found.spent_usd - reserved_usd
        if tightest is None or room <= tightest.budget_usd - tightest.spent_usd - reserved_usd:
            tightest = found
    return None if tightest is None else Allowance(budget.policy, tightest)


def _job_cost(model: ModelConfig, *, tokens: int, output_tokens: int) -> Decimal:
    # List prices: the ordering is what matters (every provider's batch discount is 50%).
    return (model.input_per_mtok * tokens + model.output_per_mtok * output_tokens) / 1_000_000


def downgrade(
    catalog: Catalog,
    route: Route,
    *,
    tokens: int,
    output_tokens: int,
    exceeded: Exceeded,
    open_providers: frozenset[str],
) -> Route:
    """The route of a tenant over budget with the ``downgrade`` policy: the cheapest model
    for this job that holds its input, on a provider whose circuit is closed, among those
    cheaper than the chosen one; the chosen one when none is cheaper. A model the client
    pinned stays (intake refuses new pinned jobs of such a tenant; this is one accepted
    before the budget was reached)."""
    why = exceeded.describe()
    details: dict[str, Any] = dict(route.details)
    if route.details.get("hint") == "model":
        details["budget"] = f"{why}: the client's model is kept"
        return Route(route.provider, route.model, f"{route.reason}; {why}, pinned model kept",
                     details)  # fmt: skip
    current = _job_cost(catalog.model(route.model), tokens=tokens, output_tokens=output_tokens)
    cheaper = [
        model
        for model in catalog.models
        if model.context_tokens >= tokens
        and model.provider not in open_providers
        and _job_cost(model, tokens=tokens, output_tokens=output_tokens) < current
    ]
    if not cheaper:
        details["budget"] = f"{why}: {route.model} is already the cheapest model for this job"
        return Route(route.provider, route.model, f"{route.reason}; {why}, already cheapest",
                     details)  # fmt: skip
    chosen = min(
        cheaper,
        key=lambda m: (_job_cost(m, tokens=tokens, output_tokens=output_tokens), m.name),
    )
    details["budget"] = f"{why}: downgraded from {route.model} to {chosen.name}"
    details["candidates"] = list(
        dict.fromkeys([*details.get("candidates", []), *(m.name for m in cheaper)])
    )
    reason = f"{route.reason}; {why}, downgraded to {chosen.name}"
    return Route(chosen.provider, chosen.name, reason, details)
