"""A real API server process for OpenAI's SDK (an in-process TestClient cannot serve it),
with small body and file limits so the upload gates can be tested without 200 MB files."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from app.stack.processes import Supervisor, http_ok, wait_until
from tests.conftest import ROOT, free_port

MAX_BODY_BYTES = 32 * 1024
MAX_FILE_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def openai_server(supervisor: Supervisor, database: str, broker: str) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    env = dict(
        os.environ,
        THRIFTY_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        THRIFTY_MAX_FILE_BYTES=str(MAX_FILE_BYTES),
        THRIFTY_CHAT_TIMEOUT_SECONDS="60",
    )
    child = supervisor.start(f"openai-api-{port}", argv, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/healthz"), timeout=60, what="the API",
               on_poll=supervisor.check_alive)  # fmt: skip
    yield f"{url}/v1"
    supervisor.stop(child)
