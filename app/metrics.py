"""The operator's Prometheus endpoint, on its own port (never the public API's).

Event metrics (jobs finished, LPR histogram, cost and savings, cache lookups, provider
requests, Celery task durations) are counted where they happen. In the stack every process
writes them to the shared ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess
mode) and this server adds them up at scrape; without that directory it serves the metrics
of its own process. Beside them, a few gauges read Postgres through partial indexes only
(jobs that have not ended, waiting jobs per window, pending deliveries), so a scrape costs
the same with a million jobs stored as with ten.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.batching.metrics import BatchCollector
from app.delivery.metrics import DeliveryCollector
from app.jobs.metrics import JobCollector

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _ThisProcess(Collector):
    """The metrics this process counted (when there is no multiprocess directory)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def build_registry() -> CollectorRegistry:
    """Every process's event metrics plus the database gauges."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(JobCollector())
    registry.register(BatchCollector())
    registry.register(DeliveryCollector())
    return registry


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def serve(*, host: str, port: int) -> None:
    """Answer ``GET /metrics`` (any path) on ``host:port`` until killed."""
    app = make_wsgi_app(build_registry())
    with make_server(host, port, app, handler_class=_Quiet) as server:
        log.info("metrics on http://%s:%d/metrics", host, port)
        server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="Thrifty's operator metrics server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    serve(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
