"""Failure injection: rate limits, server errors, slow answers, lost answers and latency on
API calls.

Two sources: the settings' rates (``rate_limit_rate``, ``server_error_rate``, drawn from a
seeded generator) and faults queued at run time with ``POST /_simulator/faults``, which hit
the next ``count`` calls under a path prefix. Tests use the queue to make a failure happen
exactly when they want it, over real HTTP; operators use the rates for soak runs.

A *lost answer* is a call the simulator carries out (a batch is created) whose answer never
arrives: the connection is closed after the status line, as when a proxy or the network
drops the response. ``lose_create_rate`` does that to that share of batch creates.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from app.simulator.common import APIError, SimulatorSettings

_MESSAGES = {
    429: "Rate limit reached for requests (simulated). Please try again later.",
    500: "The server had an error while processing your request (simulated).",
    502: "Bad gateway (simulated).",
    503: "The engine is currently overloaded (simulated). Please try again later.",
    529: "Overloaded (simulated).",
}


class FaultSpec(BaseModel):
    """Body of ``POST /_simulator/faults``: what the next ``count`` matching calls get."""

    status: int = Field(default=429, ge=400, le=599)
    count: int = Field(default=1, ge=1)
    path_prefix: str = "/v1/"
    retry_after: float | None = Field(default=None, ge=0)
    # Hold the call this long before answering (normally); a client timeout shorter than
    # this sees a timeout. With delay_seconds set, ``status`` is ignored.
    delay_seconds: float | None = Field(default=None, gt=0)
    message: str | None = None
    # Only calls with this method (``POST``), any method when unset.
    method: str | None = None
    # Carry the call out, then drop its answer (``status`` is ignored).
    lose_answer: bool = False


# The calls that create a provider batch: the ones whose lost answers can bill twice.
CREATES = (("POST", "/v1/batches"), ("POST", "/v1/messages/batches"))


class LostAnswer(Exception):
    """Raised mid-answer so that the server closes the connection: the answer is lost."""


async def _lost_body() -> AsyncIterator[bytes]:
    raise LostAnswer("the simulator dropped this answer (lose_answer fault)")
    yield b""  # pragma: no cover - makes this an async generator


@dataclass
class _Queued:
    spec: FaultSpec
    left: int


class Faults:
    """The queued faults, the dice for the settings' rates, and the calls counted so far."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._rng = random.Random(settings.seed)
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def add(self, spec: FaultSpec) -> None:
        with self._lock:
            self._queue.append(_Queued(spec, spec.count))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.calls.clear()
            self.max_in_flight = self.in_flight

    def pick(self, method: str, path: str) -> FaultSpec | None:
        """The fault this call gets, if any; counts the call."""
        with self._lock:
            self.calls[f"{method} {path}"] += 1
            for queued in self._queue:
                wanted = queued.spec.method
                if path.startswith(queued.spec.path_prefix) and wanted in (None, method):
                    queued.left -= 1
                    if queued.left <= 0:
                        self._queue.remove(queued)
                    return queued.spec
            settings = self.settings
            creates = settings.lose_create_rate and (method, path) in CREATES
            if creates and self._rng.random() < settings.lose_create_rate:
                return FaultSpec(lose_answer=True)
            draw = self._rng.random()
            if draw < settings.rate_limit_rate:
                return FaultSpec(status=429, retry_after=settings.retry_after_seconds)
            if draw < settings.rate_limit_rate + settings.server_error_rate:
                return FaultSpec(status=500)
            return None


def install(app: FastAPI, faults: Faults, render: Callable[[Request, APIError], Response]) -> None:
    """Add the fault middleware and the ``/_simulator`` control endpoints to ``app``."""

    @app.middleware("http")
    async def inject(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if not path.startswith("/v1/"):
            return await call_next(request)
        faults.enter()
        try:
            return await _handle(request, call_next)
        finally:
            faults.leave()

    async def _handle(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if faults.settings.latency_seconds:
            await asyncio.sleep(faults.settings.latency_seconds)
        spec = faults.pick(request.method, path)
        if spec is None:
            return await call_next(request)
        if spec.lose_answer:
            await call_next(request)  # the provider acts on the call ...
            # ... and the answer starts but never completes: the client sees a broken
            # connection, not an error status it could trust.
            return StreamingResponse(_lost_body(), media_type="application/json")
        if spec.delay_seconds is not None:
            await asyncio.sleep(spec.delay_seconds)
            return await call_next(request)
        headers = {}
        if spec.retry_after is not None:
            headers["retry-after"] = f"{spec.retry_after:g}"
        error_type = "requests" if spec.status == 429 else "server_error"
        message = spec.message or _MESSAGES.get(spec.status, f"Simulated HTTP {spec.status}.")
        code = "rate_limit_exceeded" if spec.status == 429 else None
        error = APIError(spec.status, message, error_type=error_type, code=code, headers=headers)
        return render(request, error)

    control = APIRouter(prefix="/_simulator")

    @control.post("/faults")
    def add_fault(spec: FaultSpec) -> dict[str, str]:
        faults.add(spec)
        return {"status": "queued"}

    @control.delete("/faults")
    def clear_faults() -> dict[str, str]:
        faults.clear()
        return {"status": "cleared"}

    @control.get("/calls")
    def calls() -> dict[str, int]:
        """Calls per ``METHOD /path`` since the last reset, and the most ever in flight."""
        return {**faults.calls, "max_in_flight": faults.max_in_flight}

    app.include_router(control)


def json_error(request: Request, error: APIError) -> JSONResponse:
    """Render ``error`` in the shape of the provider whose path was called."""
    body = error.anthropic_body() if request.url.path.startswith("/v1/messages") else error.body()
    return JSONResponse(body, status_code=error.status_code, headers=error.headers or None)
