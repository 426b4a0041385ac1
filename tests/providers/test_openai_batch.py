"""The OpenAI Batch adapter against the simulator over HTTP: lifecycle, errors, limits."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.providers.base import (
    BatchHandle,
    BatchRequest,
    BatchStatus,
    ProviderError,
    ProviderLimits,
    split_requests,
)
from app.providers.openai_batch import OpenAIBatchProvider
from app.simulator.summarise import count_tokens, simulate_completion
from tests.providers.conftest import FAST, SECRET, Sim, Sleeps

MODEL = "gpt-4o-mini"


def _requests(count: int, prefix: str = "job") -> list[BatchRequest]:
    return [
        BatchRequest(
            f"{prefix}-{i}",
            [{"role": "user", "content": f"What is the capital of country number {i}?"}],
            None,
        )
        for i in range(count)
    ]


def _provider(sim: Sim, **kwargs: object) -> OpenAIBatchProvider:
    return OpenAIBatchProvider(
        base_url=sim.v1,
        api_key=SECRET,
        policy=FAST,
        sleep=Sleeps(),
        **kwargs,  # type: ignore[arg-type]
    )


def _find(provider: OpenAIBatchProvider, reference: str) -> BatchHandle | None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    return provider.find_batch(reference=reference, custom_ids=frozenset(), since=since)


def _wait_ended(
    provider: OpenAIBatchProvider, external_id: str, seen: list[str], timeout: float = 10
) -> BatchStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = provider.retrieve(external_id)
        if not seen or seen[-1] != status.status:
            seen.append(status.status)
        if status.ended:
            return status
        assert time.monotonic() < deadline, f"stuck in {status.status}"
        time.sleep(0.02)


def test_batch_goes_through_every_state_and_results_match_by_custom_id(sim: Sim) -> None:
    requests = _requests(8)
    provider = _provider(sim)
    try:
        handle = provider.submit(reference="ref-lifecycle", model=MODEL, requests=requests)
        assert handle.status == "validating"
        assert handle.input_file_id
        seen: list[str] = []
        status = _wait_ended(provider, handle.external_id, seen)
        results = provider.results(status)
    finally:
        provider.close()
    assert seen == ["validating", "in_progress", "finalizing", "completed"]
    assert status.error is None
    assert status.error_file_id is None
    assert [r.custom_id for r in results] != [r.custom_id for r in requests]  # order differs
    by_id = {r.custom_id: r for r in results}
    assert set(by_id) == {r.custom_id for r in requests}
    for request in requests:
        expected = simulate_completion(request.messages, MODEL).content
        assert by_id[request.custom_id].content == expected
        assert by_id[request.custom_id].output_tokens == count_tokens(expected)


def test_find_batch_sees_our_reference(sim: Sim) -> None:
    provider = _provider(sim)
    try:
        handle = provider.submit(reference="ref-find", model=MODEL, requests=_requests(2))
        found = _find(provider, "ref-find")
        assert _find(provider, "ref-unknown") is None
    finally:
        provider.close()
    assert found is not None
    assert found.external_id == handle.external_id
    assert found.input_file_id == handle.input_file_id


def test_cancel_goes_through_cancelling_and_keeps_finished_results(sim: Sim) -> None:
    provider = _provider(sim)
    try:
        handle = provider.submit(reference="ref-cancel", model=MODEL, requests=_requests(20))
        time.sleep(0.3)  # validating 0.1 s, then part of the 0.4 s processing
        cancelling = provider.cancel(handle.external_id)
        seen: list[str] = []
        status = _wait_ended(provider, handle.external_id, seen)
        results = provider.results(status)
        assert _find(provider, "ref-cancel") is None  # cancelled: resend allowed
    finally:
        provider.close()
    assert cancelling.status == "cancelling"
    assert not cancelling.ended
    assert status.status == "cancelled"
    assert status.ended
    assert 0 < len(results) < 20
    assert all(r.error is None for r in results)


def test_failed_batch_reports_the_providers_validation_errors(sim: Sim) -> None:
    provider = _provider(sim)
    try:
        handle = provider.submit(
            reference="ref-failed", model=MODEL, requests=[BatchRequest("bad", [], None)]
        )
        status = _wait_ended(provider, handle.external_id, [])
    finally:
        provider.close()
    assert status.status == "failed"
    assert status.error is not None
    assert "body.messages" in status.error
    assert "line 1" in status.error


def test_per_line_errors_come_from_the_error_file(start_simulator: Callable[..., Sim]) -> None:
    server = start_simulator(validating_seconds=0.05, processing_seconds=0.1, error_rate=0.5)
    provider = _provider(server)
    try:
        handle = provider.submit(reference="ref-errors", model=MODEL, requests=_requests(40))
        status = _wait_ended(provider, handle.external_id, [])
        results = provider.results(status)
    finally:
        provider.close()
    assert status.status == "completed"
    assert status.error_file_id
    assert status.output_file_id
    failed = [r for r in results if r.error is not None]
    assert len(results) == 40
    assert 0 < len(failed) < 40
    for result in failed:
        assert result.content is None
        assert "simulated invalid_request_error" in result.error  # type: ignore[operator]
        assert result.error_code == "invalid_request_error"
        assert not result.retryable


def test_expired_batch_returns_finished_lines_and_batch_expired_errors(
    start_simulator: Callable[..., Sim],
) -> None:
    server = start_simulator(
        validating_seconds=0.05, processing_seconds=2.0, expire_after_seconds=0.5
    )
    provider = _provider(server)
    try:
        handle = provider.submit(reference="ref-expired", model=MODEL, requests=_requests(30))
        seen: list[str] = []
        status = _wait_ended(provider, handle.external_id, seen)
        results = provider.results(status)
        assert _find(provider, "ref-expired") is None
    finally:
        provider.close()
    assert seen[-1] == "expired"
    assert "in_progress" in seen
    assert status.error is not None
    assert "expired" in status.error
    expired = [r for r in results if r.error_code == "batch_expired"]
    done = [r for r in results if r.error is None]
    assert len(results) == 30
    assert expired
    assert done
    assert all(r.retryable and "completion window expired" in (r.error or "") for r in expired)


def test_split_requests_honours_request_and_byte_limits(sim: Sim) -> None:
    provider = _provider(sim, limits=ProviderLimits(max_requests=4, max_bytes=10_000_000))
    try:
        requests = _requests(10)
        assert [len(c) for c in split_requests(provider, model=MODEL, requests=requests)] == [
            4, 4, 2,
        ]  # fmt: skip
        one = provider.request_bytes(model=MODEL, request=requests[0])
        assert one > 50
    finally:
        provider.close()
    small = _provider(sim, limits=ProviderLimits(max_requests=100, max_bytes=one * 3 + 2))
    try:
        chunks = split_requests(small, model=MODEL, requests=requests)
        assert all(len(c) <= 3 for c in chunks)
        assert sum(map(len, chunks)) == 10
        payloads = [sum(small.request_bytes(model=MODEL, request=r) for r in c) for c in chunks]
        assert max(payloads) <= small.limits.max_bytes
        for chunk in chunks:  # every chunk is accepted as one batch
            small.submit(reference="ref-split", model=MODEL, requests=chunk)
    finally:
        small.close()


def test_windows_over_the_limit_are_refused_before_any_upload(sim: Sim) -> None:
    provider = _provider(sim, limits=ProviderLimits(max_requests=2, max_bytes=10_000_000))
    try:
        with pytest.raises(ProviderError, match="at most 2 requests") as info:
            provider.submit(reference="ref-big", model=MODEL, requests=_requests(3))
    finally:
        provider.close()
    assert not info.value.retryable
    assert sim.calls("POST /v1/files") == 0


def test_published_limits_are_exposed() -> None:
    provider = OpenAIBatchProvider(base_url="http://127.0.0.1:9/v1", api_key="k")
    assert provider.limits == ProviderLimits(max_requests=50_000, max_bytes=200 * 1024 * 1024)
    provider.close()


def test_rate_limited_upload_is_retried_and_the_batch_created_once(sim: Sim) -> None:
    sim.fault(status=429, count=1, retry_after=0.2, path_prefix="/v1/files")
    sim.fault(status=502, count=1, path_prefix="/v1/batches")
    provider = _provider(sim)
    try:
        handle = provider.submit(reference="ref-retry", model=MODEL, requests=_requests(2))
    finally:
        provider.close()
    assert handle.external_id
    assert sim.calls("POST /v1/files") == 2
    assert sim.calls("POST /v1/batches") == 2


def test_a_refused_call_raises_a_non_retryable_error_without_the_key(sim: Sim) -> None:
    sim.fault(status=400, path_prefix="/v1/batches", message=f"bad key {SECRET}")
    provider = _provider(sim)
    try:
        with pytest.raises(ProviderError) as info:
            provider.submit(reference="ref-400", model=MODEL, requests=_requests(1))
    finally:
        provider.close()
    assert not info.value.retryable
    assert info.value.status_code == 400
    assert SECRET not in str(info.value)
    assert "HTTP 400" in str(info.value)


def test_a_lost_create_answer_is_looked_up_not_sent_again(sim: Sim) -> None:
    """The simulator creates the batch and drops the answer (as a proxy losing it would):
    the retry finds the batch by its reference instead of creating a second, billed one."""
    sim.fault(lose_answer=True, method="POST", path_prefix="/v1/batches", count=1)
    provider = _provider(sim)
    try:
        handle = provider.submit(reference="ref-lost-answer", model=MODEL, requests=_requests(3))
    finally:
        provider.close()
    listing = httpx.get(
        f"{sim.v1}/batches", params={"limit": 100}, headers={"Authorization": f"Bearer {SECRET}"}
    ).json()["data"]
    mine = [
        b for b in listing if (b.get("metadata") or {}).get("thrifty_batch_id") == "ref-lost-answer"
    ]
    assert [b["id"] for b in mine] == [handle.external_id]
    assert sim.calls("POST /v1/batches") == 1  # never created twice
    assert sim.calls("POST /v1/files") == 1  # the upload was not repeated either
