"""An API server process for the tests that speak HTTP to a running API (browser, CLI)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from app.stack.processes import Supervisor, http_ok, wait_until
from tests.conftest import ROOT, free_port


@pytest.fixture(scope="module")
def api_server(supervisor: Supervisor, database: str) -> Iterator[str]:
    port = free_port()
    name = f"report-api-{port}"
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    child = supervisor.start(name, argv, env=dict(os.environ), cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: http_ok(f"{url}/healthz"),
        timeout=60,
        what="the API",
        on_poll=supervisor.check_alive,
    )
    yield url
    supervisor.stop(child)
