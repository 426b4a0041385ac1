"""Prometheus metrics. Job and batch counts are read from Postgres at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.delivery.metrics import DeliveryCollector
from app.kit.db import session_scope
from app.models import Job, ProviderBatch


class StateCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("thrifty_jobs", "Jobs by state", labels=["state"])
        batches = GaugeMetricFamily(
            "thrifty_provider_batches", "Provider batches by state", labels=["state"]
        )
        cost = GaugeMetricFamily("thrifty_cost_usd", "Cost of completed jobs", labels=["kind"])
        with session_scope() as session:
            for state, count in session.execute(
                select(Job.state, func.count()).group_by(Job.state)
            ):
                jobs.add_metric([state.value], count)
            query = select(ProviderBatch.state, func.count()).group_by(ProviderBatch.state)
            for batch_state, count in session.execute(query):
                batches.add_metric([batch_state.value], count)
            spent, naive = session.execute(
                select(
                    func.coalesce(func.sum(Job.cost_usd), 0),
                    func.coalesce(func.sum(Job.naive_cost_usd), 0),
                )
            ).one()
            cost.add_metric(["actual"], float(spent or 0))
            cost.add_metric(["naive"], float(naive or 0))
        yield jobs
        yield batches
        yield cost


registry = CollectorRegistry()
registry.register(StateCollector())
registry.register(DeliveryCollector())
