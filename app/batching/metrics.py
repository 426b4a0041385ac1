"""Provider batch gauges, read from Postgres at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.kit.db import session_scope
from app.models import ProviderBatch


class BatchCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        batches = GaugeMetricFamily(
            "thrifty_provider_batches", "Provider batches by state", labels=["state"]
        )
        with session_scope() as session:
            query = select(ProviderBatch.state, func.count()).group_by(ProviderBatch.state)
            for batch_state, count in session.execute(query):
                batches.add_metric([batch_state.value], count)
        yield batches
