"""Simulator processes with chosen flags, each over real HTTP, for the adapter tests."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.providers.http import RetryPolicy
from app.stack.processes import Supervisor, http_ok, wait_until
from tests.conftest import ROOT, free_port

# Fast retries for tests: the waits are recorded, not timed.
FAST = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=2.0)
SECRET = "sk-test-SECRETKEY-0123456789abcdef"


@dataclass
class Sim:
    """One simulator process: ``url`` is its root, ``v1`` its OpenAI base URL."""

    url: str

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.url}/_simulator/faults", json=spec).raise_for_status()

    def reset(self) -> None:
        httpx.delete(f"{self.url}/_simulator/faults").raise_for_status()

    def calls(self, key: str) -> int:
        counts: dict[str, int] = httpx.get(f"{self.url}/_simulator/calls").json()
        return counts.get(key, 0)


@pytest.fixture(scope="session")
def start_simulator(supervisor: Supervisor) -> Callable[..., Sim]:
    """Start ``thrifty simulator`` with the given flags (``error_rate=0.5`` -> ``--error-rate``).

    ``env`` adds environment variables to the simulator process.
    """
    started: dict[tuple[tuple[str, str], ...], Sim] = {}

    def start(env: dict[str, str] | None = None, **flags: Any) -> Sim:
        key = tuple(sorted((k, str(v)) for k, v in {**flags, **(env or {})}.items()))
        if key in started:
            return started[key]
        port = free_port()
        argv = [sys.executable, "-m", "app.cli", "simulator", "--port", str(port)]
        for name, value in flags.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        supervisor.start(f"simulator-{port}", argv, env={**os.environ, **(env or {})}, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_ok(f"{url}/healthz"),
            timeout=30,
            what="simulator",
            on_poll=supervisor.check_alive,
        )
        started[key] = Sim(url)
        return started[key]

    return start


@pytest.fixture
def sim(start_simulator: Callable[..., Sim]) -> Iterator[Sim]:
    """A fast simulator with every batch state visible, faults cleared around each test."""
    server = start_simulator(
        validating_seconds=0.1,
        processing_seconds=0.4,
        finalizing_seconds=0.3,
        cancelling_seconds=0.2,
    )
    server.reset()
    yield server
    server.reset()


class Sleeps(list[float]):
    """A ``sleep`` for adapters that records each wait and sleeps it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(seconds)
