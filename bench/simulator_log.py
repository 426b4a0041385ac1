"""The provider simulator with a request log, for benches that must prove nothing was sent twice.

    python -m bench.simulator_log --port 8100 [--processing-seconds 30] [--latency-seconds 0.4]

The simulator's own batches keep their input files (``bench.collector.sent_custom_ids`` reads
them), but a realtime call leaves nothing behind. This wraps the simulator's app
(``app.simulator.server.create_app``, with whatever it models) in an ASGI layer that records a
digest of every ``POST /v1/chat/completions`` body (model, messages, output limit,
temperature: what the provider is asked) and answers ``GET /_bench/realtime`` with
``{"calls": N, "digests": {digest: count}}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from typing import Any

import uvicorn

from app.simulator.common import SimulatorSettings
from app.simulator.server import create_app

ASGI = Any


def request_digest(body: dict[str, Any]) -> str:
    """What identifies a provider request: the fields that decide its answer."""
    shape = {k: body.get(k) for k in ("model", "messages", "max_tokens", "temperature")}
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


class RequestLog:
    """ASGI middleware counting realtime chat requests by digest."""

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self.digests: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and scope["path"] == "/_bench/realtime":
            payload = json.dumps(
                {"calls": sum(self.digests.values()), "digests": dict(self.digests)}
            ).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": payload})
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            body = json.loads(raw)
            if isinstance(body, dict):
                self.digests[request_digest(body)] += 1
        except ValueError:
            pass
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:  # later reads wait for the client's disconnect, as the server's do
                message: dict[str, Any] = await receive()
                return message
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--validating-seconds", type=float, default=0.5)
    parser.add_argument("--processing-seconds", type=float, default=2.0)
    parser.add_argument("--finalizing-seconds", type=float, default=0.0)
    parser.add_argument("--latency-seconds", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = SimulatorSettings(
        validating_seconds=args.validating_seconds,
        processing_seconds=args.processing_seconds,
        finalizing_seconds=args.finalizing_seconds,
        latency_seconds=args.latency_seconds,
        seed=args.seed,
    )
    app = RequestLog(create_app(settings))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
