"""The official ``openai`` and ``anthropic`` SDKs, unchanged, against ``thrifty simulator``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import anthropic
import httpx
import openai
import pytest

from tests.conftest import ROOT
from tests.providers.conftest import Sim


def test_independent_check_script_passes(sim: Sim) -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_simulator_sdks.py"),
         "--openai-base-url", sim.v1, "--anthropic-base-url", sim.url, "--timeout", "20"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "7 passed, 0 failed" in completed.stdout
    for call in ("chat.completions.create", "embeddings.create", "batches.cancel",
                 "messages.create", "messages.batches.create/retrieve/results",
                 "messages.batches.cancel"):  # fmt: skip
        assert f"ok    openai {call}" in completed.stdout or f"ok    anthropic {call}" in (
            completed.stdout
        )


def test_openai_sdk_sees_rate_limits_and_retries_them(sim: Sim) -> None:
    no_retry = openai.OpenAI(base_url=sim.v1, api_key="sk-test", max_retries=0)
    sim.fault(status=429, count=1, retry_after=0.1, path_prefix="/v1/chat")
    with pytest.raises(openai.RateLimitError) as info:
        no_retry.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.response.headers["retry-after"] == "0.1"
    assert info.value.code == "rate_limit_exceeded"
    retrying = openai.OpenAI(base_url=sim.v1, api_key="sk-test", max_retries=2)
    sim.fault(status=500, count=1, path_prefix="/v1/chat")
    reply = retrying.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.choices[0].message.content
    assert sim.calls("POST /v1/chat/completions") == 3


def test_openai_sdk_reads_expired_batches(start_simulator: Callable[..., Sim]) -> None:
    server = start_simulator(
        validating_seconds=0.05, processing_seconds=5, expire_after_seconds=0.3
    )
    client = openai.OpenAI(base_url=server.v1, api_key="sk-test")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": body}
    uploaded = client.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 10
    while (batch := client.batches.retrieve(batch.id)).status != "expired":
        assert time.monotonic() < deadline, batch.status
        time.sleep(0.05)
    assert batch.expired_at
    assert batch.error_file_id
    assert batch.request_counts
    assert batch.request_counts.failed == 1
    [error_line] = client.files.content(batch.error_file_id).text.splitlines()
    assert json.loads(error_line)["error"]["code"] == "batch_expired"


def test_openai_sdk_embeddings_are_deterministic_and_meaningful(sim: Sim) -> None:
    client = openai.OpenAI(base_url=sim.v1, api_key="sk-test")
    texts = ["the cat sat on the mat", "the cat sat on a mat", "quarterly revenue grew"]
    first = [d.embedding for d in client.embeddings.create(model="m", input=texts).data]
    again = [d.embedding for d in client.embeddings.create(model="m", input=texts).data]
    floats = client.embeddings.create(model="m", input=texts, encoding_format="float")
    assert first == again
    for exact, packed in zip(floats.data, first, strict=True):
        assert exact.embedding == pytest.approx(packed, abs=1e-6)  # float vs base64 float32

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(first[0], first[1]) > 0.6 > cos(first[0], first[2])
    sized = client.embeddings.create(model="m", input="x", dimensions=64)
    assert len(sized.data[0].embedding) == 64


def test_anthropic_sdk_errors_are_typed(sim: Sim) -> None:
    client = anthropic.Anthropic(base_url=sim.url, api_key="sk-ant-test", max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_unknown")
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client.messages.create(
            model="claude-3-5-haiku-latest",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=0,
        )
    sim.fault(status=529, path_prefix="/v1/messages")
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(
            model="claude-3-5-haiku-latest",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=10,
        )
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


def test_anthropic_endpoints_need_a_key_and_a_version(sim: Sim) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    no_key = httpx.post(
        f"{sim.url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
    )
    assert no_key.status_code == 401
    assert no_key.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
    }
    no_version = httpx.post(f"{sim.url}/v1/messages", json=body, headers={"x-api-key": "k"})
    assert no_version.status_code == 400
    assert "anthropic-version" in no_version.text
    ok = httpx.post(
        f"{sim.url}/v1/messages",
        json=body,
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert ok.status_code == 200
    assert ok.json()["stop_reason"] in {"end_turn", "max_tokens"}
    assert ok.json()["usage"]["output_tokens"] <= 5


def test_both_sdks_list_batches_page_by_page(start_simulator: Callable[..., Sim]) -> None:
    server = start_simulator(validating_seconds=0.05, processing_seconds=0.1, seed=3)
    openai_client = openai.OpenAI(base_url=server.v1, api_key="sk-test")
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    line = {"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": body}
    created = []
    for _ in range(3):
        uploaded = openai_client.files.create(
            file=("in.jsonl", json.dumps(line).encode()), purpose="batch"
        )
        batch = openai_client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        created.append(batch.id)
    listed = [b.id for b in openai_client.batches.list(limit=2)]  # auto-paginates
    assert listed[:3] == created[::-1]

    claude = anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test")
    request = {"custom_id": "a", "params": {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "hi"}]}}  # fmt: skip
    ids = [claude.messages.batches.create(requests=[request]).id for _ in range(3)]  # type: ignore[list-item]
    assert [b.id for b in claude.messages.batches.list(limit=2)][:3] == ids[::-1]
