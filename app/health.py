from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.kit.db import session_scope
from app.kit.errors import DATABASE_RETRY_AFTER
from app.kit.json_input import StrictJSONRoute
from app.kit.queue import get_sender

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)


@router.get("/healthz", summary="Liveness and readiness")
def health() -> JSONResponse:
    """200 when Postgres and the broker answer, 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        with session_scope() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        with get_sender().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse(
        status_code=200 if healthy else 503,
        content={"status": "ok" if healthy else "degraded", **checks},
        headers=None if healthy else {"Retry-After": str(DATABASE_RETRY_AFTER)},
    )
