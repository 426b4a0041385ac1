"""The providers' wire formats on their own, without HTTP: requests built, answers read."""

from __future__ import annotations

import orjson
import pytest

from app.providers import anthropic_format, openai_format
from app.providers.base import (
    FALLBACK_CODES,
    BatchRequest,
    BatchStatus,
    ProviderBatchStatus,
    ProviderError,
)

REQUEST = BatchRequest(
    "job-1",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."}],
    32,
    0.5,
)


def test_openai_batch_line_is_a_chat_completion_request() -> None:
    line = orjson.loads(openai_format.batch_line("gpt-4o-mini", REQUEST))
    assert line == {
        "custom_id": "job-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-4o-mini",
            "messages": REQUEST.messages,
            "max_tokens": 32,
            "temperature": 0.5,
        },
    }
    plain = openai_format.chat_body("m", BatchRequest("j", REQUEST.messages, None))
    assert "max_tokens" not in plain
    assert "temperature" not in plain
    batch_file = openai_format.batch_file("m", [REQUEST, REQUEST])
    assert batch_file.count(b"\n") == 2
    assert batch_file.endswith(b"\n")


def test_openai_status_reports_end_and_validation_errors() -> None:
    failed = openai_format.status_of(
        {
            "id": "batch_1",
            "status": "failed",
            "errors": {"data": [{"code": "invalid", "line": 3, "message": "bad body"}]},
        }
    )
    assert failed == BatchStatus(
        "batch_1", "failed", True, None, None, "invalid (line 3): bad body"
    )
    running = openai_format.status_of({"id": "batch_2", "status": "finalizing"})
    assert not running.ended
    assert running.error is None
    expired = openai_format.status_of(
        {"id": "batch_3", "status": "expired", "output_file_id": "file-o", "errors": None}
    )
    assert expired.ended
    assert expired.output_file_id == "file-o"
    assert expired.error


def test_openai_live_batch_skips_dead_and_foreign_batches() -> None:
    page: openai_format.BatchPage = {
        "data": [
            {"id": "b1", "status": "cancelled", "metadata": {"thrifty_batch_id": "ref"}},
            {"id": "b2", "status": "in_progress", "metadata": {"thrifty_batch_id": "other"}},
            {"id": "b3", "status": "in_progress", "metadata": None},
            {"id": "b4", "status": "validating", "metadata": {"thrifty_batch_id": "ref"},
             "input_file_id": "file-in"},
        ]
    }  # fmt: skip
    handle = openai_format.live_batch(page, reference="ref")
    assert handle is not None
    assert (handle.external_id, handle.input_file_id, handle.status) == (
        "b4",
        "file-in",
        "validating",
    )
    assert openai_format.live_batch(page, reference="missing") is None


def test_openai_result_lines_success_error_and_expiry() -> None:
    ok = openai_format.parse_result_line(
        orjson.dumps(
            {
                "custom_id": "a",
                "response": {
                    "status_code": 200,
                    "body": {
                        "choices": [{"message": {"content": "hello"}}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 1},
                    },
                },
            }
        )
    )
    assert (ok.content, ok.input_tokens, ok.output_tokens, ok.error) == ("hello", 5, 1, None)
    refused = openai_format.parse_result_line(
        orjson.dumps(
            {
                "custom_id": "b",
                "response": {
                    "status_code": 400,
                    "body": {"error": {"type": "invalid_request_error", "message": "no"}},
                },
            }
        )
    )
    assert (refused.error, refused.error_code, refused.retryable) == (
        "no",
        "invalid_request_error",
        False,
    )
    overloaded = openai_format.parse_result_line(
        orjson.dumps({"custom_id": "c", "response": {"status_code": 503, "body": None}})
    )
    assert (overloaded.error, overloaded.retryable) == ("HTTP 503", True)
    expired = openai_format.parse_result_line(
        orjson.dumps(
            {"custom_id": "d", "error": {"code": "batch_expired", "message": "window ended"}}
        )
    )
    assert (expired.error, expired.error_code, expired.retryable) == (
        "batch_expired: window ended",
        "batch_expired",
        True,
    )


def test_openai_realtime_answers_and_failures() -> None:
    result = openai_format.completion_result(
        "a", {"choices": [{"message": {"content": None}}], "usage": None}
    )
    assert (result.content, result.input_tokens, result.error) == ("", 0, None)
    with pytest.raises(KeyError):
        openai_format.completion_result("a", {})
    refused = openai_format.failed_call_result(
        "b", ProviderError("HTTP 400", retryable=False, status_code=400)
    )
    assert (refused.error_code, refused.retryable) == ("http_400", False)
    lost = openai_format.failed_call_result("c", ProviderError("timeout", retryable=True))
    assert (lost.error_code, lost.retryable) == ("connection_error", True)


def test_openai_embeddings_in_input_order_or_an_error() -> None:
    body = openai_format.embeddings_body("m", ["x", "y"], 8)
    assert body == {"model": "m", "input": ["x", "y"], "encoding_format": "float", "dimensions": 8}
    response: openai_format.EmbeddingsResponse = {
        "data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1, 0]}]
    }
    assert openai_format.embedding_vectors(response, expected=2) == [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ProviderError, match="asked for 3 vectors, got 2") as info:
        openai_format.embedding_vectors(response, expected=3)
    assert info.value.retryable


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        ({"processing_status": "in_progress"}, "in_progress"),
        ({"processing_status": "canceling"}, "cancelling"),
        ({"processing_status": "ended", "cancel_initiated_at": "2026-01-01T00:00:00Z"},
         "cancelled"),
        ({"processing_status": "ended", "request_counts": {"expired": 3}}, "expired"),
        ({"processing_status": "ended", "request_counts": {"expired": 1, "errored": 1}},
         "completed"),
        ({"processing_status": "ended", "request_counts": None}, "completed"),
    ],
)  # fmt: skip
def test_anthropic_processing_status_maps_onto_openai_names(
    batch: dict[str, object], expected: ProviderBatchStatus
) -> None:
    message_batch: anthropic_format.MessageBatch = {"id": "msgbatch_1", **batch}  # type: ignore[typeddict-item]
    status = anthropic_format.status_of(message_batch)
    assert status.status == expected
    assert status.ended == (batch["processing_status"] == "ended")
    assert (status.error is not None) == (expected == "expired")


def test_anthropic_results_url_stands_in_for_the_output_file_once_ended() -> None:
    ended = anthropic_format.status_of(
        {"id": "b", "processing_status": "ended", "results_url": "https://x/results"}
    )
    assert ended.output_file_id == "https://x/results"
    running = anthropic_format.status_of(
        {"id": "b", "processing_status": "in_progress", "results_url": "https://x/results"}
    )
    assert running.output_file_id is None


def test_anthropic_batch_body_is_sent_unescaped() -> None:
    request = BatchRequest("j", [{"role": "user", "content": "café"}], None)
    body = anthropic_format.create_batch_body("claude", [request], default_max_tokens=16, tag="t")
    assert body["requests"][0]["params"] == {
        "model": "claude",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "café"}],
    }
    assert "café".encode() in anthropic_format.encode(body)


def test_an_anthropic_message_with_stop_reason_refusal_is_a_fallback_not_an_answer() -> None:
    line = {
        "custom_id": "r",
        "result": {
            "type": "succeeded",
            "message": {
                "content": [{"type": "text", "text": "Hello.."}],
                "stop_reason": "refusal",
                "usage": {"input_tokens": 12, "output_tokens": 2},
            },
        },
    }
    refused = anthropic_format.parse_result_line(orjson.dumps(line).decode())
    assert (refused.content, refused.error_code, refused.retryable) == (None, "refusal", False)
    assert refused.error_code in FALLBACK_CODES
