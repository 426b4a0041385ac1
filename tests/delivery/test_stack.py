"""The embedded stack lets webhooks reach receivers on its own machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.kit import queue
from app.stack.embedded import EmbeddedStack


def test_the_stack_allows_loopback_receivers_and_runs_the_delivery_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THRIFTY_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    monkeypatch.delenv("THRIFTY_PUBLIC_BASE_URL", raising=False)
    stack = EmbeddedStack(Settings(home=tmp_path, api_port=8123))
    env = stack._child_env()
    assert env["THRIFTY_WEBHOOK_ALLOW_LOOPBACK"] == "true"
    assert env["THRIFTY_PUBLIC_BASE_URL"] == "http://127.0.0.1:8123"
    assert Settings(_env_file=None, **{}).webhook_allow_loopback is False  # type: ignore[call-arg]
    assert "delivery" in queue.QUEUES
    assert queue.TASK_QUEUES[queue.DELIVER_WEBHOOK] == "delivery"
