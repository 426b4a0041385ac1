"""The operator's Prometheus endpoint, on its own port (never the public API's).

Event metrics (jobs finished, LPR histogram, cost and savings, cache lookups, provider
requests, Celery task durations) are counted where they happen. In the stack every process
writes them to the shared ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess
mode) and this server adds them up at scrape; without that directory it serves the metrics
of its own process. Beside them, a few gauges read Postgres through partial indexes only
(jobs that have not ended, waiting jobs per window, pending deliveries). The server reads
them in a thread of its own every ``THRIFTY_METRICS_REFRESH_SECONDS`` and a scrape serves the
last reading (its age in ``thrifty_metrics_snapshot_age_seconds``), so a scrape never waits
on Postgres and costs the same with a million jobs stored as with ten.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from app.batching.metrics import BatchCollector
from app.config import get_settings
from app.delivery.metrics import DeliveryCollector
from app.jobs.metrics import JobCollector

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _ThisProcess(Collector):
    """The metrics this process counted (when there is no multiprocess directory)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class Snapshot(Collector):
    """The database gauges as last read by a thread of their own, every ``every`` seconds:
    a scrape returns the reading at once. A reading that fails (Postgres away) keeps the
    previous one; its age tells how fresh it is."""

    def __init__(self, collectors: list[Collector], *, every: float) -> None:
        self._collectors, self._every = collectors, every
        self._metrics: list[Metric] = []
        self._read_at: float | None = None
        self._ready, self._stopped = threading.Event(), threading.Event()
        self._failing = False
        threading.Thread(target=self._run, name="metrics-snapshot", daemon=True).start()

    def _read(self) -> None:
        try:
            metrics = [metric for collector in self._collectors for metric in collector.collect()]
        except Exception:
            if not self._failing:  # once per outage, not at every reading
                log.exception("reading the database gauges failed; serving the last reading")
            self._failing = True
            return
        self._metrics, self._read_at, self._failing = metrics, time.monotonic(), False

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._read()
            self._ready.set()
            self._stopped.wait(self._every)

    def close(self) -> None:
        self._stopped.set()

    def collect(self) -> Iterable[Metric]:
        self._ready.wait(timeout=10)
        age = GaugeMetricFamily(
            "thrifty_metrics_snapshot_age_seconds",
            "Seconds since the database gauges were read (-1: never)",
        )
        read_at = self._read_at
        age.add_metric([], -1.0 if read_at is None else time.monotonic() - read_at)
        return [*self._metrics, age]


def build_registry(*, refresh_seconds: float | None = None) -> CollectorRegistry:
    """Every process's event metrics plus the database gauges: read at each collect, or
    with ``refresh_seconds`` from a ``Snapshot`` refreshed that often."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    gauges: list[Collector] = [JobCollector(), BatchCollector(), DeliveryCollector()]
    if refresh_seconds is None:
        for collector in gauges:
            registry.register(collector)
    else:
        registry.register(Snapshot(gauges, every=refresh_seconds))
    return registry


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def serve(*, host: str, port: int) -> None:
    """Answer ``GET /metrics`` (any path) on ``host:port`` until killed."""
    app = make_wsgi_app(build_registry(refresh_seconds=get_settings().metrics_refresh_seconds))
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
