"""The HTTP API."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
import sqlalchemy.exc
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.cache.endpoints import router as cache_router
from app.catalog.catalog import get_catalog
from app.delivery.endpoints import router as webhooks_router
from app.frontdoor.endpoints import UPLOAD_PATH
from app.frontdoor.endpoints import router as openai_router
from app.frontdoor.endpoints import uploads as openai_uploads
from app.health import router as health_router
from app.intake.endpoints import router as intake_router
from app.jobs.endpoints import router as jobs_router
from app.jobs.schemas import JobIn
from app.kit.bodies import BodyLimits
from app.kit.errors import ErrorBody, ErrorResponse, ThriftyError, database_unavailable
from app.kit.json_input import StrictJSONRoute
from app.ledger.endpoints import router as stats_router
from app.ledger.report import router as report_router
from app.ledger.report import static_files as report_static
from app.routing import strategies
from app.routing.endpoints import router as routing_router
from app.tenants.endpoints import router as keys_router

log = logging.getLogger(__name__)

DESCRIPTION = """
Thrifty cuts the cost of bulk LLM work. Submit jobs (a prompt, or a document plus an
instruction); Thrifty answers what it can from its cache, routes the rest to the cheapest
capable model, groups them into discounted provider batch calls and stores the results.

Authenticate with `Authorization: Bearer <api key>`. Every error has the shape
`{"error": {"type": ..., "message": ..., "details": [...]}}`.
"""


HTTP_ERROR_TYPES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def _error(
    status: int,
    type_: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(type=type_, message=message, details=details))
    return JSONResponse(status_code=status, content=body.model_dump(mode="json"), headers=headers)


def _route_methods(routers: list[APIRouter]) -> list[tuple[re.Pattern[str], set[str]]]:
    """Each route's path pattern and methods, to answer 405 with every allowed method
    (Starlette's names only the first route on the path; GET and POST /v1/keys are two)."""
    return [
        (route.path_regex, set(route.methods or ()))
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
    ]


def create_app() -> FastAPI:
    # A trained router the catalog names but that does not load stops the API at start-up.
    strategies.check_configured_router(get_catalog())
    app = FastAPI(title="Thrifty", version="0.1.0", description=DESCRIPTION)
    app.router.route_class = StrictJSONRoute
    app.add_middleware(BodyLimits, upload_paths=frozenset({UPLOAD_PATH}))
    routers = [
        intake_router,
        jobs_router,
        cache_router,
        routing_router,
        webhooks_router,
        keys_router,
        stats_router,
        report_router,
        openai_uploads,
        openai_router,
    ]
    for router in [*routers, health_router]:
        app.include_router(router)
    app.mount("/report/static", report_static, name="report-static")

    @app.exception_handler(ThriftyError)
    async def _thrifty_error(request: Request, exc: ThriftyError) -> JSONResponse:
        return _error(exc.status_code, exc.type, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            # Malformed JSON is 400 on every endpoint (StrictJSONRoute parses first anyway).
            return _error(400, "bad_request", "malformed JSON")
        details = [
            {"loc": list(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "message": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        return _error(422, "validation_error", f"{where}: {first['message']}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The router's 405 carries `Allow`; keep every header the exception has.
        type_ = HTTP_ERROR_TYPES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path only; every route
            # on it counts (GET and POST /v1/keys are two routes).
            path = request.url.path
            route_methods = _route_methods([*routers, health_router, app.router])
            allowed = {m for pattern, ms in route_methods if pattern.match(path) for m in ms}
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
        return _error(exc.status_code, type_, str(exc.detail), headers=headers)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.InterfaceError)
    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    @app.exception_handler(psycopg.OperationalError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # Postgres is down or unreachable (a restart, a failover): the request's transaction
        # was rolled back, and the pool reconnects by itself (pre-ping) once it is back.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        down = database_unavailable()
        return _error(down.status_code, down.type, down.message, down.details, down.headers)

    @app.exception_handler(sqlalchemy.exc.DataError)
    @app.exception_handler(psycopg.DataError)
    async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
        # A value Postgres refuses (a NUL in text, a number out of range) that validation let
        # through: the request is refused, not the server broken. The bulk writers send
        # their arrays past SQLAlchemy, so psycopg's own error arrives here too.
        cause = exc.orig if isinstance(exc, sqlalchemy.exc.DataError) else exc
        reason = str(cause).splitlines()[0] if cause else "invalid value"
        log.warning("refused a value Postgres cannot store on %s: %s", request.url.path, reason)
        return _error(422, "validation_error", f"a value cannot be stored: {reason}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "internal error; the server log has details")

    # Metrics (every tenant's counts and costs) are not served here: the operator metrics
    # server has its own port (app/metrics.py, THRIFTY_METRICS_PORT).

    def openapi() -> dict[str, Any]:
        # The submit endpoint reads its body by hand (object or list, size-limited), so its
        # schema is declared explicitly and JobIn is added to the components here.
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            job_in = JobIn.model_json_schema(ref_template="#/components/schemas/{model}")
            # Its enums (CacheMode, RequestedMode) become components beside it.
            for name, definition in job_in.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components["JobIn"] = job_in
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_app()
