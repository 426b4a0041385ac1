"""Job gauges, read from Postgres at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.kit.db import session_scope
from app.models import Job


class JobCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("thrifty_jobs", "Jobs by state", labels=["state"])
        cost = GaugeMetricFamily("thrifty_cost_usd", "Cost of completed jobs", labels=["kind"])
        with session_scope() as session:
            for state, count in session.execute(
                select(Job.state, func.count()).group_by(Job.state)
            ):
                jobs.add_metric([state.value], count)
            spent, naive = session.execute(
                select(
                    func.coalesce(func.sum(Job.cost_usd), 0),
                    func.coalesce(func.sum(Job.naive_cost_usd), 0),
                )
            ).one()
            cost.add_metric(["actual"], float(spent or 0))
            cost.add_metric(["naive"], float(naive or 0))
        yield jobs
        yield cost
