"""The Anthropic Message Batches adapter against the simulator over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from app.providers.anthropic_batch import AnthropicBatchProvider
from app.providers.anthropic_format import message_params, parse_result_line
from app.providers.base import BatchRequest, BatchStatus, ProviderError, ProviderLimits
from app.simulator.summarise import count_prompt_tokens, count_tokens, simulate_completion
from tests.providers.conftest import FAST, SECRET, Sim, Sleeps

MODEL = "claude-3-5-haiku-latest"


def _requests(count: int) -> list[BatchRequest]:
    return [
        BatchRequest(
            f"job-{i}",
            [
                {"role": "system", "content": "You answer in one sentence."},
                {"role": "user", "content": f"What is the capital of country number {i}?"},
            ],
            64,
        )
        for i in range(count)
    ]


def _provider(sim: Sim, **kwargs: object) -> AnthropicBatchProvider:
    return AnthropicBatchProvider(
        base_url=sim.url,
        api_key=SECRET,
        policy=FAST,
        sleep=Sleeps(),
        **kwargs,  # type: ignore[arg-type]
    )


def _wait_ended(provider: AnthropicBatchProvider, external_id: str, seen: list[str]) -> BatchStatus:
    deadline = time.monotonic() + 10
    while True:
        status = provider.retrieve(external_id)
        if not seen or seen[-1] != status.status:
            seen.append(status.status)
        if status.ended:
            return status
        assert time.monotonic() < deadline, f"stuck in {status.status}"
        time.sleep(0.02)


def test_batch_ends_and_results_match_by_custom_id(sim: Sim) -> None:
    requests = _requests(6)
    provider = _provider(sim)
    try:
        handle = provider.submit(reference="r1", model=MODEL, requests=requests)
        seen: list[str] = []
        status = _wait_ended(provider, handle.external_id, seen)
        results = provider.results(status)
    finally:
        provider.close()
    assert handle.external_id.startswith("msgbatch_")
    assert handle.status == "in_progress"
    assert seen == ["in_progress", "completed"]
    by_id = {r.custom_id: r for r in results}
    assert set(by_id) == {r.custom_id for r in requests}
    for request in requests:
        expected = simulate_completion(request.messages, MODEL, 64).content
        result = by_id[request.custom_id]
        assert result.error is None
        assert result.content == expected
        assert result.output_tokens == count_tokens(expected)
        assert result.input_tokens == count_prompt_tokens(request.messages)


def test_system_messages_become_the_system_parameter() -> None:
    provider = AnthropicBatchProvider(base_url="http://127.0.0.1:9", api_key="k")
    params = message_params(model=MODEL, request=BatchRequest("a", _requests(1)[0].messages, None))
    provider.close()
    assert params["system"] == "You answer in one sentence."
    assert [m["role"] for m in params["messages"]] == ["user"]
    assert params["max_tokens"] == 1024  # required by Anthropic; our default
    assert provider.limits == ProviderLimits(max_requests=100_000, max_bytes=256 * 1024 * 1024)


def test_cancel_ends_with_canceled_results(sim: Sim) -> None:
    provider = _provider(sim)
    try:
        handle = provider.submit(reference="r2", model=MODEL, requests=_requests(20))
        time.sleep(0.3)
        cancelling = provider.cancel(handle.external_id)
        status = _wait_ended(provider, handle.external_id, [])
        results = provider.results(status)
    finally:
        provider.close()
    assert cancelling.status == "cancelling"
    assert not cancelling.ended
    assert status.status == "cancelled"
    canceled = [r for r in results if r.error_code == "canceled"]
    succeeded = [r for r in results if r.error is None]
    assert len(results) == 20
    assert canceled
    assert succeeded
    assert all(r.retryable for r in canceled)


def test_errored_and_expired_results(start_simulator: Callable[..., Sim]) -> None:
    server = start_simulator(
        validating_seconds=0.0, processing_seconds=2.0, expire_after_seconds=0.5, error_rate=0.3
    )
    provider = _provider(server)
    try:
        # A quarter of the requests run before the batch expires; with 200 of them, some are
        # sure to draw the simulator's 30% error rate (with 40, 0.7**10 = 3% of runs drew none).
        handle = provider.submit(reference="r3", model=MODEL, requests=_requests(200))
        status = _wait_ended(provider, handle.external_id, [])
        results = provider.results(status)
    finally:
        provider.close()
    assert status.status == "completed"  # some requests ran; the rest fail on their own
    kinds = {r.error_code for r in results}
    assert {None, "expired"} <= kinds
    errored = [r for r in results if r.error_code == "invalid_request_error"]
    assert errored
    assert all("error rate" in (r.error or "") and not r.retryable for r in errored)
    expired = [r for r in results if r.error_code == "expired"]
    assert all(r.retryable for r in expired)


def test_all_expired_batch_is_expired(start_simulator: Callable[..., Sim]) -> None:
    server = start_simulator(
        validating_seconds=1.0, processing_seconds=1.0, expire_after_seconds=0.2
    )
    provider = _provider(server)
    try:
        handle = provider.submit(reference="r4", model=MODEL, requests=_requests(3))
        status = _wait_ended(provider, handle.external_id, [])
        results = provider.results(status)
    finally:
        provider.close()
    assert status.status == "expired"
    assert status.error
    assert [r.error_code for r in results] == ["expired"] * 3


def test_invalid_params_are_errored_with_the_providers_message(sim: Sim) -> None:
    provider = _provider(sim)
    try:
        bad = BatchRequest("job-bad", [{"role": "system", "content": "only a system prompt"}], 10)
        handle = provider.submit(reference="r5", model=MODEL, requests=[*_requests(1), bad])
        results = {
            r.custom_id: r for r in provider.results(_wait_ended(provider, handle.external_id, []))
        }
    finally:
        provider.close()
    assert results["job-0"].error is None
    assert results["job-bad"].error_code == "invalid_request_error"
    assert "messages" in (results["job-bad"].error or "")


def test_refused_batch_raises_with_the_providers_message_and_no_key(sim: Sim) -> None:
    provider = _provider(sim, limits=ProviderLimits(max_requests=5, max_bytes=10_000))
    try:
        with pytest.raises(ProviderError, match="at most 5 requests"):
            provider.submit(reference="r6", model=MODEL, requests=_requests(6))
        sim.fault(status=401, path_prefix="/v1/messages", message=f"invalid x-api-key {SECRET}")
        with pytest.raises(ProviderError) as info:
            provider.submit(reference="r6", model=MODEL, requests=_requests(1))
    finally:
        provider.close()
    assert info.value.status_code == 401
    assert not info.value.retryable
    assert SECRET not in str(info.value)
    assert "invalid x-api-key" in str(info.value)


def test_overloaded_and_rate_limited_calls_are_retried(sim: Sim) -> None:
    sim.fault(status=529, count=1, method="POST", path_prefix="/v1/messages/batches")
    sim.fault(
        status=429, count=1, retry_after=0.1, method="POST", path_prefix="/v1/messages/batches"
    )
    sleeps = Sleeps()
    provider = AnthropicBatchProvider(
        base_url=sim.url + "/v1", api_key=SECRET, policy=FAST, sleep=sleeps
    )
    try:
        handle = provider.submit(reference="r7", model=MODEL, requests=_requests(1))
    finally:
        provider.close()
    assert handle.external_id
    assert sim.calls("POST /v1/messages/batches") == 3
    # A 5xx may come after the provider acted: the retry looked for its batch first.
    assert sim.calls("GET /v1/messages/batches") >= 1
    assert sleeps[1] >= 0.1


def test_results_lines_parse_all_four_types() -> None:
    message = {
        "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    lines = [
        {"custom_id": "a", "result": {"type": "succeeded", "message": message}},
        {"custom_id": "b", "result": {"type": "errored", "error": overloaded}},
        {"custom_id": "c", "result": {"type": "canceled"}},
        {"custom_id": "d", "result": {"type": "expired"}},
    ]
    a, b, c, d = (parse_result_line(json.dumps(line)) for line in lines)
    assert (a.content, a.input_tokens, a.output_tokens, a.error) == ("hi", 3, 1, None)
    assert (b.error, b.error_code, b.retryable) == ("busy", "overloaded_error", True)
    assert c.error_code == "canceled"
    assert d.error_code == "expired"


def test_a_lost_create_answer_waits_for_the_candidate_and_adopts_it(sim: Sim) -> None:
    """Anthropic batches carry no metadata: after a create whose answer was lost, the
    attempt waits for the batch made since then with as many requests, and adopts it once
    its results show exactly our custom_ids; it never sends a second copy."""
    requests = [
        BatchRequest(f"lost-{i}", [{"role": "user", "content": f"Lost answer {i}?"}], 32)
        for i in range(7)
    ]
    ids = frozenset(r.custom_id for r in requests)
    since = datetime.now(UTC)
    sim.fault(lose_answer=True, method="POST", path_prefix="/v1/messages/batches", count=1)
    provider = _provider(sim)
    try:
        with pytest.raises(ProviderError, match="waiting for it to end") as raised:
            provider.submit(reference="r-lost", model=MODEL, requests=requests)
        assert raised.value.retryable
        deadline = time.monotonic() + 10
        while True:  # the next attempt (a task retry) looks again before sending
            try:
                found = provider.find_batch(reference="r-lost", custom_ids=ids, since=since)
                break
            except ProviderError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        other = provider.find_batch(
            reference="r-lost", custom_ids=frozenset(f"x-{i}" for i in range(7)), since=since
        )
        # The same requests sent for another batch of ours (the jobs fell back from another
        # model): its custom_ids carry that batch's tag, so it is not adopted.
        elsewhere = provider.find_batch(reference="r-other", custom_ids=ids, since=since)
    finally:
        provider.close()
    assert found is not None
    assert other is None  # same size, other requests: not ours
    assert elsewhere is None
    assert sim.calls("POST /v1/messages/batches") == 1
