"""The simulator's chat completions, embeddings, failure injection and flags, over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from app.simulator.common import SimulatorSettings
from app.simulator.summarise import count_prompt_tokens, count_tokens, simulate_completion
from tests.providers.conftest import Sim

AUTH = {"Authorization": "Bearer sk-test"}
MESSAGES = [
    {"role": "system", "content": "Summarise in one sentence."},
    {"role": "user", "content": "The river wall was repaired. It cost a lot. Trade recovered."},
]


def test_chat_completion_usage_matches_its_text(sim: Sim) -> None:
    response = httpx.post(
        f"{sim.v1}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_completion_tokens": 30},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    content = body["choices"][0]["message"]["content"]
    assert content == simulate_completion(MESSAGES, "gpt-4o-mini", 30).content
    assert body["usage"] == {
        "prompt_tokens": count_prompt_tokens(MESSAGES),
        "completion_tokens": count_tokens(content),
        "total_tokens": count_prompt_tokens(MESSAGES) + count_tokens(content),
        # A short prompt is never read from the prompt cache.
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"messages": MESSAGES}, "model"),
        ({"model": "m", "messages": MESSAGES, "stream": True}, "stream"),
        ({"model": "m", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": [{"content": "no role"}]}, "messages[0]"),
    ],
)
def test_bad_chat_requests_are_openai_style_400s(
    sim: Sim, body: dict[str, object], param: str
) -> None:
    response = httpx.post(f"{sim.v1}/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_chat_and_embeddings_need_a_key(sim: Sim) -> None:
    for path in ("chat/completions", "embeddings"):
        response = httpx.post(f"{sim.v1}/{path}", json={})
        assert response.status_code == 401
        assert "API key" in response.json()["error"]["message"]


def test_embeddings_reject_bad_input(sim: Sim) -> None:
    response = httpx.post(f"{sim.v1}/embeddings", json={"model": "m", "input": []}, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_queued_faults_hit_the_next_matching_calls_only(sim: Sim) -> None:
    sim.fault(status=503, count=2, path_prefix="/v1/embeddings", retry_after=2)
    body = {"model": "m", "input": "x"}
    first = httpx.post(f"{sim.v1}/embeddings", json=body, headers=AUTH)
    chat = httpx.post(
        f"{sim.v1}/chat/completions", json={"model": "m", "messages": MESSAGES}, headers=AUTH
    )
    second = httpx.post(f"{sim.v1}/embeddings", json=body, headers=AUTH)
    third = httpx.post(f"{sim.v1}/embeddings", json=body, headers=AUTH)
    assert [first.status_code, chat.status_code, second.status_code, third.status_code] == [
        503, 200, 503, 200,
    ]  # fmt: skip
    assert first.headers["retry-after"] == "2"
    assert first.json()["error"]["type"] == "server_error"
    assert sim.calls("POST /v1/embeddings") == 3


def test_anthropic_paths_get_anthropic_shaped_faults(sim: Sim) -> None:
    sim.fault(status=429, retry_after=1, path_prefix="/v1/messages")
    response = httpx.post(
        f"{sim.url}/v1/messages",
        json={},
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 429
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_rate_flags_inject_429s_and_500s(start_simulator: Callable[..., Sim]) -> None:
    limited = start_simulator(rate_limit_rate=1.0, retry_after_seconds=7)
    response = httpx.post(
        f"{limited.v1}/embeddings", json={"model": "m", "input": "x"}, headers=AUTH
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    broken = start_simulator(server_error_rate=1.0)
    response = httpx.get(f"{broken.v1}/batches", headers=AUTH)
    assert response.status_code == 500
    assert httpx.get(f"{broken.url}/healthz").status_code == 200  # health is never faulted


def test_settings_can_come_from_the_environment(start_simulator: Callable[..., Sim]) -> None:
    # `thrifty up` starts the simulator with only --port; the environment configures the rest.
    failing = start_simulator(env={"THRIFTY_SIMULATOR_ERROR_RATE": "1.0"})
    response = httpx.post(
        f"{failing.v1}/chat/completions",
        json={"model": "m", "messages": MESSAGES},
        headers=AUTH,
    )
    assert response.status_code == 400
    assert "simulated invalid_request_error" in response.json()["error"]["message"]


def test_latency_flag_delays_every_call(start_simulator: Callable[..., Sim]) -> None:
    slow = start_simulator(latency_seconds=2)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{slow.v1}/batches", headers=AUTH, timeout=0.5)
    assert httpx.get(f"{slow.url}/healthz", timeout=0.5).status_code == 200


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        SimulatorSettings(error_rate=1.5)
    with pytest.raises(ValueError, match="expire_after_seconds"):
        SimulatorSettings(expire_after_seconds=0)
