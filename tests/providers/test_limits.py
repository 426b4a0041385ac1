"""Published batch limits: windows are split to fit, and the simulator enforces the limits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from app.providers.anthropic_batch import AnthropicBatchProvider
from app.providers.base import BatchRequest, split_requests
from app.providers.openai_batch import OpenAIBatchProvider
from tests.providers.conftest import FAST, Sim, Sleeps


@pytest.fixture
def sim(start_simulator: Callable[..., Sim]) -> Sim:
    """A simulator whose batches never finish: nothing here ever answers 100,000 requests."""
    return start_simulator(validating_seconds=0.1, processing_seconds=3600)


def _requests(count: int) -> list[BatchRequest]:
    return [BatchRequest(f"r{i}", [{"role": "user", "content": f"q{i}"}], 8) for i in range(count)]


def test_openai_window_over_50000_requests_is_split_and_each_part_accepted(sim: Sim) -> None:
    provider = OpenAIBatchProvider(base_url=sim.v1, api_key="k", policy=FAST, sleep=Sleeps())
    try:
        chunks = split_requests(provider, model="gpt-4o-mini", requests=_requests(50_001))
        assert [len(c) for c in chunks] == [50_000, 1]
        handle = provider.submit(reference="limit", model="gpt-4o-mini", requests=chunks[0])
        time.sleep(0.2)  # past validation (0.1 s)
        status = provider.retrieve(handle.external_id)
    finally:
        provider.close()
    assert status.status != "failed", status.error


def test_the_simulator_fails_an_openai_batch_over_50000_requests(sim: Sim) -> None:
    lines = "".join(
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "m", "messages": [{"role": "user", "content": "q"}]}}) + "\n"
        for i in range(50_001)
    )  # fmt: skip
    with httpx.Client(base_url=sim.v1, headers={"Authorization": "Bearer k"}, timeout=60) as http:
        upload = http.post("/files", files={"file": ("big.jsonl", lines.encode())},
                           data={"purpose": "batch"}).json()  # fmt: skip
        batch = http.post(
            "/batches",
            json={"input_file_id": upload["id"], "endpoint": "/v1/chat/completions",
                  "completion_window": "24h"},
        ).json()  # fmt: skip
        time.sleep(0.2)
        batch = http.get(f"/batches/{batch['id']}").json()
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][-1]["code"] == "too_many_requests"


def test_anthropic_window_over_100000_requests_is_split_and_each_part_accepted(sim: Sim) -> None:
    provider = AnthropicBatchProvider(base_url=sim.url, api_key="k", policy=FAST, sleep=Sleeps())
    try:
        chunks = split_requests(provider, model="claude", requests=_requests(100_001))
        assert [len(c) for c in chunks] == [100_000, 1]
        handle = provider.submit(reference="limit", model="claude", requests=chunks[0])
    finally:
        provider.close()
    assert handle.status == "in_progress"


def test_the_simulator_refuses_an_anthropic_batch_over_100000_requests(sim: Sim) -> None:
    requests = [
        {"custom_id": f"r{i}", "params": {"model": "m", "max_tokens": 1, "messages": []}}
        for i in range(100_001)
    ]
    response = httpx.post(
        f"{sim.url}/v1/messages/batches",
        json={"requests": requests},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        timeout=60,
    )
    assert response.status_code == 400
    assert "at most 100000 requests" in response.json()["error"]["message"]
