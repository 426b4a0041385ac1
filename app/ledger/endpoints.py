"""``GET /v1/stats``: cost, savings by layer, latency and throughput from the ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.kit.deps import SessionDep
from app.kit.errors import API_ERROR_CODES, error_responses
from app.kit.json_input import StrictJSONRoute
from app.ledger import ranges, stats
from app.ledger.schemas import GroupBy, StatsOut
from app.models import utcnow
from app.tenants.deps import StatsReader
from app.tenants.scopes import Scope

router = APIRouter(prefix="/v1", tags=["stats"], route_class=StrictJSONRoute)


@router.get(
    "/stats", response_model=StatsOut, responses=error_responses(*API_ERROR_CODES), summary="Stats"
)
def get_stats(
    principal: StatsReader,
    session: SessionDep,
    since: Annotated[
        str | None,
        Query(description="Start (inclusive): ISO 8601, a Unix time, or before now (`24h`)."),
    ] = None,
    until: Annotated[str | None, Query(description="End (exclusive); default now.")] = None,
    group_by: Annotated[GroupBy | None, Query(description="Also answer per value.")] = None,
) -> Response:
    """Jobs that ended in the range: counts by state, cost per request (actual and naive),
    savings by layer, latency per request (p50/p95/p99, overall and per mode), deadlines met,
    throughput (mean and peak minute), cache hit rate and tokens; money as decimal strings.

    Answered from rollups kept as jobs end. Unknown `group_by`, an unparsable or reversed
    range, and a range over 366 days (31 with `group_by=hour`) are 422s. Needs `stats:read`
    (the key's tenant) or `operator` (every tenant)."""
    start, end = ranges.resolve(since, until, group_by=group_by, now=utcnow())
    tenant_id = None if Scope.operator in principal.scopes else principal.tenant.id
    # The JSON is written straight from the sums (``stats.stats_json``): the same bytes as
    # the response model's, without validating thousands of group blocks through it.
    answer = stats.stats_json(
        session, tenant_id=tenant_id, since=start, until=end, group_by=group_by
    )
    return Response(answer, media_type="application/json")
