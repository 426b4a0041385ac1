"""The OpenAI-compatible realtime adapter against the simulator over HTTP, failures included."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from app.providers.base import BatchRequest
from app.providers.http import RetryPolicy
from app.providers.openai_realtime import OpenAIRealtimeProvider
from app.simulator.summarise import count_prompt_tokens, count_tokens, simulate_completion
from tests.conftest import free_port
from tests.providers.conftest import FAST, SECRET, Sim, Sleeps

MODEL = "gpt-4o-mini"
CHAT = "POST /v1/chat/completions"


def _requests(count: int) -> list[BatchRequest]:
    return [
        BatchRequest(
            f"job-{i}",
            [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": f"What is the capital of country number {i}?"},
            ],
            40,
        )
        for i in range(count)
    ]


def _provider(
    base_url: str, sleeps: Sleeps | None = None, **kwargs: object
) -> OpenAIRealtimeProvider:
    return OpenAIRealtimeProvider(
        base_url=base_url,
        api_key=SECRET,
        policy=kwargs.pop("policy", FAST),  # type: ignore[arg-type]
        sleep=sleeps if sleeps is not None else Sleeps(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_complete_many_returns_every_answer_in_order_with_matching_usage(sim: Sim) -> None:
    requests = _requests(12)
    provider = _provider(sim.v1)
    try:
        results = provider.complete_many(model=MODEL, requests=requests, concurrency=4)
    finally:
        provider.close()
    assert [r.custom_id for r in results] == [r.custom_id for r in requests]
    for request, result in zip(requests, results, strict=True):
        expected = simulate_completion(request.messages, MODEL, 40).content
        assert result.error is None
        assert result.content == expected
        assert result.output_tokens == count_tokens(expected)
        assert result.input_tokens == count_prompt_tokens(request.messages)
    assert sim.calls(CHAT) == 12


def test_concurrency_is_bounded(sim: Sim) -> None:
    # Every call is held 0.2 s by the simulator, so calls overlap as much as the pool allows.
    sim.fault(path_prefix="/v1/chat", delay_seconds=0.2, count=16)
    provider = _provider(sim.v1)
    try:
        results = provider.complete_many(model=MODEL, requests=_requests(16), concurrency=3)
    finally:
        provider.close()
    assert all(r.error is None for r in results)
    assert 1 < sim.calls("max_in_flight") <= 3


def test_rate_limit_waits_for_retry_after_then_succeeds(sim: Sim) -> None:
    sim.fault(status=429, count=2, retry_after=0.3, path_prefix="/v1/chat")
    sleeps = Sleeps()
    provider = _provider(sim.v1, sleeps)
    try:
        [result] = provider.complete_many(model=MODEL, requests=_requests(1), concurrency=1)
    finally:
        provider.close()
    assert result.error is None
    assert result.content
    assert sim.calls(CHAT) == 3
    assert len(sleeps) == 2
    assert all(wait >= 0.3 for wait in sleeps)  # the provider's retry-after, not our backoff


def test_server_errors_retry_with_backoff_then_succeed(sim: Sim) -> None:
    sim.fault(status=500, count=2, path_prefix="/v1/chat")
    sleeps = Sleeps()
    provider = _provider(sim.v1, sleeps)
    try:
        [result] = provider.complete_many(model=MODEL, requests=_requests(1), concurrency=1)
    finally:
        provider.close()
    assert result.error is None
    assert sim.calls(CHAT) == 3
    # Full jitter under an exponential cap: initial 0.01, then 0.02.
    assert len(sleeps) == 2
    assert sleeps[0] <= 0.01
    assert sleeps[1] <= 0.02


def test_server_errors_are_retried_a_bounded_number_of_times(sim: Sim) -> None:
    sim.fault(status=503, count=50, path_prefix="/v1/chat")
    provider = _provider(sim.v1)
    try:
        [result] = provider.complete_many(model=MODEL, requests=_requests(1), concurrency=1)
    finally:
        provider.close()
    assert sim.calls(CHAT) == FAST.max_attempts
    assert result.content is None
    assert result.error is not None
    assert "HTTP 503" in result.error
    assert "overloaded" in result.error
    assert result.retryable


def test_timeout_is_retried(sim: Sim) -> None:
    sim.fault(path_prefix="/v1/chat", delay_seconds=1.5, count=1)
    provider = _provider(sim.v1, timeout=0.5)
    try:
        [result] = provider.complete_many(model=MODEL, requests=_requests(1), concurrency=1)
    finally:
        provider.close()
    assert result.error is None
    assert sim.calls(CHAT) == 2


def test_connection_errors_are_retried_then_reported() -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    sleeps = Sleeps()
    provider = _provider(closed, sleeps)
    try:
        [result] = provider.complete_many(model=MODEL, requests=_requests(1), concurrency=1)
    finally:
        provider.close()
    assert len(sleeps) == FAST.max_attempts - 1
    assert result.error is not None
    assert "ConnectError" in result.error
    assert result.retryable


def test_request_error_is_recorded_with_the_providers_message(sim: Sim) -> None:
    bad = BatchRequest("job-bad", [], None)  # no messages: the provider answers 400
    provider = _provider(sim.v1)
    try:
        good, failed = provider.complete_many(
            model=MODEL, requests=[*_requests(1), bad], concurrency=2
        )
    finally:
        provider.close()
    assert good.error is None
    assert failed.custom_id == "job-bad"
    assert failed.content is None
    assert failed.error is not None
    assert "HTTP 400" in failed.error
    assert "Invalid 'messages'" in failed.error
    assert not failed.retryable
    assert failed.error_code == "http_400"
    assert sim.calls(CHAT) == 2  # a 400 is not retried


def test_error_rate_fails_requests_with_the_simulated_message(
    start_simulator: Callable[..., Sim],
) -> None:
    server = start_simulator(error_rate=1.0)
    provider = _provider(server.v1)
    try:
        results = provider.complete_many(model=MODEL, requests=_requests(3), concurrency=3)
    finally:
        provider.close()
    assert all(r.error and "simulated invalid_request_error" in r.error for r in results)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 401, "message": f"Incorrect API key provided: {SECRET}."},
        {"status": 500, "count": 10},
    ],
)
def test_the_key_never_appears_in_errors_or_logs(
    sim: Sim, fault: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    sim.fault(path_prefix="/v1/chat", **fault)
    caplog.set_level(logging.DEBUG)
    provider = _provider(sim.v1, policy=RetryPolicy(max_attempts=2, initial_wait=0.01))
    try:
        [result] = provider.complete_many(model=MODEL, requests=_requests(1), concurrency=1)
    finally:
        provider.close()
    assert result.error is not None
    assert SECRET not in result.error
    assert SECRET not in caplog.text
    if fault["status"] == 401:
        assert "[redacted]" in result.error  # the provider echoed it; we scrubbed it
