"""Provider simulator: an HTTP server speaking the OpenAI and Anthropic APIs Thrifty uses.

It lets Thrifty's pipeline run end to end in development, tests and demos without an account,
and it is faithful enough for the official ``openai`` and ``anthropic`` SDKs. This module
builds the app (``create_app``) and runs it (``serve``); the APIs live beside it:

- OpenAI Files and Batches: routes in ``openai_routes.py``, state and the batch lifecycle in
  ``openai_batches.py``, the lines of batch input and output files in ``openai_lines.py``;
- OpenAI chat completions and embeddings: ``chat.py``;
- Anthropic Messages and Message Batches: ``anthropic.py``;
- the JSON all of them send: ``wire.py``; settings, errors and dice: ``common.py``;
- failure injection (429s, 5xx, latency) and the ``/_simulator`` controls: ``faults.py``;

Every request is answered by the deterministic extractive summariser (``summarise.py``), so
the same input always produces the same output text and token usage.
"""

from __future__ import annotations

from typing import Annotated

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.simulator import anthropic, chat, faults, openai_routes
from app.simulator.common import APIError, SimulatorSettings

__all__ = ["APIError", "SimulatorSettings", "create_app", "serve"]

_MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _require_auth(authorization: Annotated[str | None, Header()] = None) -> None:
    """Reject requests without ``Authorization: Bearer <key>``, as the real API does."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise APIError(401, _MISSING_KEY_MESSAGE)


def _install_error_handlers(app: FastAPI) -> None:
    """Render every error, including FastAPI's own, in the called provider's error format."""

    @app.exception_handler(APIError)
    def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return faults.json_error(request, exc)

    @app.exception_handler(RequestValidationError)
    def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {}
        location = [str(part) for part in first.get("loc", ()) if part not in {"body", "query"}]
        param = ".".join(location) or None
        message = str(first.get("msg", "Invalid request."))
        error = APIError(400, f"{message} ({param})" if param else message, param=param)
        return faults.json_error(request, error)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code in {404, 405} and message in {"Not Found", "Method Not Allowed"}:
            # Routing misses read like OpenAI's, which names the method and path.
            message = f"Invalid URL ({request.method} {request.url.path})"
        error = APIError(exc.status_code, message, headers=dict(exc.headers or {}))
        return faults.json_error(request, error)


def create_app(settings: SimulatorSettings | None = None) -> FastAPI:
    """Build the simulator's FastAPI app with fresh, empty in-memory state."""
    settings = settings or SimulatorSettings()
    app = FastAPI(title="Thrifty provider simulator", version="1.0")
    _install_error_handlers(app)
    faults.install(app, faults.Faults(settings), faults.json_error)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # OpenAI's routes want a bearer key; Anthropic's check their own headers.
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_require_auth)])
    v1.include_router(chat.router(settings))
    v1.include_router(openai_routes.router(settings))
    app.include_router(v1)
    app.include_router(anthropic.router(settings), prefix="/v1")
    return app


def serve(host: str, port: int, settings: SimulatorSettings) -> None:
    """Run the simulator with uvicorn until interrupted."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
