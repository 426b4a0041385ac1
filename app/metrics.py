"""The Prometheus registry: each domain's gauges, read from Postgres at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from app.batching.metrics import BatchCollector
from app.delivery.metrics import DeliveryCollector
from app.jobs.metrics import JobCollector

registry = CollectorRegistry()
registry.register(JobCollector())
registry.register(BatchCollector())
registry.register(DeliveryCollector())
