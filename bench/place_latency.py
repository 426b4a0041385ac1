"""Routing cost in the request: 10,000 ``place()`` calls of cache-bypass ``rules`` jobs (what
``bench.collector`` submits), timed in-process, best and median of 5.

    python -m bench.place_latency [LABEL]

No stack needed (the circuits read as closed when Redis is unreachable). Run it against two
checkouts (``PYTHONPATH``) alternately to compare them on a loaded machine.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from app.catalog.catalog import get_catalog
from app.intake.placement import place
from app.jobs.schemas import JobIn
from app.models import RequestedMode
from app.providers import breaker

JOBS = 10_000
REPEATS = 5


def main() -> None:
    catalog = get_catalog()
    jobs = [
        JobIn(prompt=f"Question {i}: what is the capital of country {i}?", cache="bypass")
        for i in range(JOBS)
    ]
    now = datetime.now(UTC)
    breaker.open_providers(catalog)
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for job in jobs:
            place(job, instruction=None, model_hint=None, tier_hint=None,
                  requested_mode=RequestedMode.auto, deadline=None, catalog=catalog,
                  now=now)  # fmt: skip
        timings.append(time.perf_counter() - start)
    label = sys.argv[1] if len(sys.argv) > 1 else "place"
    print(
        f"{label} jobs={JOBS} median_s={sorted(timings)[REPEATS // 2]:.3f} min_s={min(timings):.3f}"
    )


if __name__ == "__main__":
    main()
