"""Job gauges read at scrape time, through partial indexes only: jobs that have not ended by
state, and per window the waiting jobs and the age of the oldest (ended jobs are counted as
they end, in app/ledger/metrics.py)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.kit.db import session_scope
from app.models import TERMINAL_STATES, Job, JobState, utcnow

OPEN_STATES = [state for state in JobState if state not in TERMINAL_STATES]


class JobCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(
            "thrifty_jobs_open", "Jobs that have not ended, by state", labels=["state"]
        )
        depth = GaugeMetricFamily(
            "thrifty_queue_depth",
            "Jobs waiting in a window, by provider, model and mode",
            labels=["provider", "model", "mode"],
        )
        oldest = GaugeMetricFamily(
            "thrifty_queue_oldest_seconds",
            "Age of the oldest job waiting in a window (since it was routed)",
            labels=["provider", "model", "mode"],
        )
        now = utcnow()
        with session_scope() as session:
            # ix_jobs_open_state_updated_at holds only the jobs that have not ended.
            by_state = select(Job.state, func.count()).where(Job.state.in_(OPEN_STATES))
            rows = session.execute(by_state.group_by(Job.state))
            counts = {state: count for state, count in rows}
            for state in OPEN_STATES:
                jobs.add_metric([state.value], counts.get(state, 0))
            # ix_jobs_window holds only waiting jobs, in (provider, model, mode) order.
            windows = (
                select(Job.provider, Job.model, Job.mode, func.count(), func.min(Job.routed_at))
                .where(Job.state == JobState.waiting, Job.coalesced_with.is_(None))
                .group_by(Job.provider, Job.model, Job.mode)
            )
            for provider, model, mode, count, first in session.execute(windows):
                labels = [provider or "", model or "", mode.value if mode else ""]
                depth.add_metric(labels, count)
                age = (now - first).total_seconds() if first else 0.0
                oldest.add_metric(labels, max(0.0, age))
        yield jobs
        yield depth
        yield oldest
