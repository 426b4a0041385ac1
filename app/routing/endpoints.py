"""``GET``/``PUT /v1/routing/settings``: how a tenant's jobs are routed."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter

from app.catalog.catalog import Catalog
from app.catalog.deps import CatalogDep
from app.kit.deps import SessionDep
from app.kit.errors import API_ERROR_CODES, error_responses
from app.kit.json_input import StrictJSONRoute
from app.models import Tenant
from app.routing import strategies
from app.routing.budgets import DEFAULT_POLICY, BudgetPolicy
from app.routing.schemas import RoutingSettingsIn, RoutingSettingsOut
from app.tenants import service as tenant_service
from app.tenants.deps import RoutingWrite

router = APIRouter(prefix="/v1/routing", tags=["routing"], route_class=StrictJSONRoute)

ERRORS = error_responses(*API_ERROR_CODES)


def _plain(amount: Decimal | None) -> Decimal | None:
    # 2.5 as written, not the column's 2.500000000000.
    return None if amount is None else amount.normalize()


def _out(tenant: Tenant, catalog: Catalog) -> RoutingSettingsOut:
    settings = strategies.TenantRouting.of(tenant.routing_strategy, tenant.quality_target)
    try:
        strategies.learned_router(catalog)
        available = True
    except strategies.RouterUnavailable:
        available = False
    pair = catalog.learned
    return RoutingSettingsOut(
        strategy=settings.strategy,
        quality_target=settings.quality_target,
        learned_available=available,
        weak_model=pair.weak_model if pair else None,
        strong_model=pair.strong_model if pair else None,
        semantic_routes=[route.name for route in catalog.semantic_routes],
        daily_budget_usd=_plain(tenant.daily_budget_usd),
        monthly_budget_usd=_plain(tenant.monthly_budget_usd),
        budget_policy=BudgetPolicy(tenant.budget_policy or DEFAULT_POLICY),
    )


@router.get("/settings", responses=ERRORS)
def get_routing_settings(tenant: RoutingWrite, catalog: CatalogDep) -> RoutingSettingsOut:
    """The tenant's routing strategy, quality target and budgets (defaults filled in)."""
    return _out(tenant, catalog)


@router.put("/settings", responses=ERRORS)
def put_routing_settings(
    body: RoutingSettingsIn, session: SessionDep, tenant: RoutingWrite, catalog: CatalogDep
) -> RoutingSettingsOut:
    """Change the strategy, the quality target, the budgets or the budget policy; jobs
    submitted or ingested from now on follow them. ``learned`` without a trained router
    that loads is refused (422), and so are a negative budget and an unknown policy."""
    given = body.model_fields_set
    strategy = body.strategy if "strategy" in given else tenant.routing_strategy
    target = body.quality_target if "quality_target" in given else tenant.quality_target
    if strategy is not None:
        strategies.check_available(catalog, strategies.Strategy(strategy))
    tenant_service.set_routing(
        session,
        tenant=tenant,
        strategy=None if strategy is None else str(strategy),
        quality_target=target,
    )
    fields = ("daily_budget_usd", "monthly_budget_usd", "budget_policy")
    daily, monthly, policy = (
        getattr(body, name) if name in given else getattr(tenant, name) for name in fields
    )
    tenant_service.set_budgets(
        session,
        tenant=tenant,
        daily_usd=daily,
        monthly_usd=monthly,
        policy=None if policy is None else str(policy),
    )
    return _out(tenant, catalog)
