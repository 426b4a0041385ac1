"""The operator metrics: event counters as jobs end, index-only gauges, its own port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from app.jobs import transitions
from app.metrics import Snapshot, build_registry, serve
from app.models import JobState, Tenant
from tests.conftest import free_port
from tests.factories import make_job
from tests.ledger.test_records import outcome, submitted_jobs


def test_ended_jobs_show_in_the_latency_histogram_and_windows_in_the_gauges(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    before = generate_latest(build_registry()).decode()
    jobs = submitted_jobs(db, tenant[0], 3)
    transitions.apply_results(db, [outcome(j) for j in jobs], from_state=JobState.submitted)
    make_job(db, tenant=tenant[0], state=JobState.waiting)
    db.commit()
    text = generate_latest(build_registry()).decode()
    assert 'thrifty_job_latency_seconds_bucket{le="+Inf",mode="batch"}' in text
    assert _value(text, 'thrifty_job_latency_seconds_count{mode="batch"}') == (
        _value(before, 'thrifty_job_latency_seconds_count{mode="batch"}') + 3
    )
    assert 'thrifty_savings_usd{layer="routing"}' in text
    depth = 'thrifty_queue_depth{mode="batch",model="gpt-4o-mini",provider="openai"} 1.0'
    assert depth in text
    assert 'thrifty_jobs_open{state="waiting"} 1.0' in text


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_the_metrics_server_answers_on_its_own_port(db: Session) -> None:
    port = free_port()
    threading.Thread(target=serve, kwargs={"host": "127.0.0.1", "port": port}, daemon=True).start()
    deadline = time.monotonic() + 10
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert response.status_code == 200
    assert "thrifty_jobs_open" in response.text


class _Counting(Collector):
    """A gauge collector whose reading counts up, and fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.reads = 0
        self.failing = threading.Event()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.failing.is_set():
            raise RuntimeError("Postgres is away")
        self.reads += 1
        gauge = GaugeMetricFamily("thrifty_test_reads", "reads")
        gauge.add_metric([], self.reads)
        yield gauge


def _sample(snapshot: Snapshot, name: str) -> float:
    (metric,) = [m for m in snapshot.collect() if m.name == name]
    return float(metric.samples[0].value)


def test_a_scrape_serves_the_last_reading_of_the_database_gauges() -> None:
    counting = _Counting()
    snapshot = Snapshot([counting], every=0.05)
    try:
        first = _sample(snapshot, "thrifty_test_reads")
        assert first >= 1
        deadline = time.monotonic() + 10
        while _sample(snapshot, "thrifty_test_reads") == first:  # refreshed in the background
            assert time.monotonic() < deadline
            time.sleep(0.02)
        counting.failing.set()
        time.sleep(0.1)
        kept = _sample(snapshot, "thrifty_test_reads")
        time.sleep(0.3)
        # A failed reading keeps the last good one, and its age shows it is getting old.
        assert _sample(snapshot, "thrifty_test_reads") == kept
        assert _sample(snapshot, "thrifty_metrics_snapshot_age_seconds") >= 0.3
    finally:
        snapshot.close()
