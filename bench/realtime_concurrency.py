"""Realtime adapter throughput against the simulator with a fixed per-call latency.

Starts the simulator in-process on a free loopback port with ``--latency-seconds``, then sends
the same requests through ``OpenAIRealtimeProvider.complete_many`` at several concurrencies:

    .venv/bin/python -m bench.realtime_concurrency --requests 200 --latency 0.05
"""

from __future__ import annotations

import argparse
import threading
import time

import uvicorn

from app.providers.base import BatchRequest
from app.providers.openai_realtime import OpenAIRealtimeProvider
from app.simulator.server import SimulatorSettings, create_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    args = parser.parse_args()
    app = create_app(SimulatorSettings(latency_seconds=args.latency))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    requests = [
        BatchRequest(f"r{i}", [{"role": "user", "content": f"What is item {i}?"}], 32)
        for i in range(args.requests)
    ]
    print(f"{args.requests} requests, simulator latency {args.latency * 1000:.0f} ms per call")
    print(f"{'concurrency':>11}  {'seconds':>8}  {'requests/s':>10}  errors")
    for concurrency in args.concurrency:
        provider = OpenAIRealtimeProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="k")
        start = time.perf_counter()
        results = provider.complete_many(model="m", requests=requests, concurrency=concurrency)
        elapsed = time.perf_counter() - start
        provider.close()
        errors = sum(r.error is not None for r in results)
        print(f"{concurrency:>11}  {elapsed:>8.2f}  {len(results) / elapsed:>10.1f}  {errors}")
    server.should_exit = True
    thread.join(timeout=5)


if __name__ == "__main__":
    main()
