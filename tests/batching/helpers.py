"""Helpers for the collector tests: private simulators, job batches and the accounting check."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.catalog.catalog import Catalog
from app.models import TERMINAL_STATES, Job, JobState, Tenant
from app.stack.processes import Supervisor, http_ok, wait_until
from tests.conftest import ROOT, free_port
from tests.factories import make_job

MINI = "gpt-4o-mini"
DUE = timedelta(seconds=5)  # past the test catalog's max_wait_seconds = 0.5


def start_simulator(supervisor: Supervisor, name: str, *flags: str) -> str:
    """A simulator process of our own (with its own failure flags); returns its /v1 URL."""
    port = free_port()
    argv = [sys.executable, "-m", "app.cli", "simulator", "--port", str(port), *flags]
    supervisor.start(name, argv, env=dict(os.environ), cwd=ROOT)
    wait_until(
        lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        timeout=30,
        what=name,
        on_poll=supervisor.check_alive,
    )
    return f"http://127.0.0.1:{port}/v1"


def stop(supervisor: Supervisor, name: str) -> None:
    for child in list(supervisor.children):
        if child.name == name:
            supervisor.stop(child)


def with_models(catalog: Catalog, **update: Any) -> Catalog:
    """A copy of ``catalog`` with ``update`` applied to every model."""
    return catalog.model_copy(
        update={"models": [m.model_copy(update=update) for m in catalog.models]}
    )


def waiting_jobs(
    db: Session, tenant: Tenant, count: int, *, model: str = MINI, mode: str = "batch"
) -> list[Job]:
    jobs = []
    for i in range(count):
        job = make_job(
            db,
            tenant=tenant,
            prompt=f"Question {i}: what is {uuid.uuid4().hex[:10]}?",
            state=JobState.waiting,
            model=model,
            routed_ago=DUE,
        )
        job.mode = mode
        job.estimated_tokens = 10
        job.estimated_bytes = 500
        jobs.append(job)
    db.commit()
    return jobs


def simulator_requests(base_url: str) -> Counter[str]:
    """How many of the simulator's batches each custom_id was sent in."""
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=base_url + "/", headers={"Authorization": "Bearer t"}) as http:
        batches = http.get("batches", params={"limit": 100}).json()["data"]
        for batch in batches:
            content = http.get(f"files/{batch['input_file_id']}/content").text
            for line in content.splitlines():
                try:
                    request = json.loads(line)
                except ValueError:
                    continue  # another test's deliberately invalid file on the shared simulator
                if isinstance(request, dict) and "custom_id" in request:
                    seen[request["custom_id"]] += 1
    return seen


def states(db: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, JobState]:
    db.expire_all()
    rows = db.execute(select(Job.id, Job.state).where(Job.id.in_(job_ids))).all()
    return {row.id: row.state for row in rows}


def assert_all_terminal(db: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, JobState]:
    found = states(db, job_ids)
    assert set(found) == set(job_ids)
    stuck = {i: s for i, s in found.items() if s not in TERMINAL_STATES}
    assert not stuck, stuck
    return found


def eventually(check: Callable[[], bool], *, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.2)
