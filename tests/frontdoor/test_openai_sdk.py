"""OpenAI's own SDK against a running Thrifty: API process, Celery worker, simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from sqlalchemy.orm import Session

from tests.conftest import make_tenant
from tests.frontdoor.conftest import MAX_BODY_BYTES, MAX_FILE_BYTES

pytestmark = pytest.mark.usefixtures("worker")

URL = "/v1/chat/completions"


def line(custom_id: str | None, body: dict[str, Any], **extra: Any) -> str:
    request = {"custom_id": custom_id, "method": "POST", "url": URL, "body": body, **extra}
    return json.dumps({k: v for k, v in request.items() if v is not None})


def ask(text: str, model: str = "auto", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **fields}


GOOD = {
    "auto": ask("Explain TCP slow start in two sentences."),
    "pinned": ask("Name three rivers in Europe.", model="gpt-4o-mini", max_tokens=50),
    "alias": ask("What is a haiku?", model="gpt-3.5-turbo", temperature=0),
    "conversation": {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": [{"type": "text", "text": "Name a prime."}]},
            {"role": "assistant", "content": "Seven."},
            {"role": "user", "content": "Another one?"},
        ],
        "max_completion_tokens": 20,
    },
}
BAD = {
    "unknown-model": (ask("Hello?", model="gpt-9-ultra"), "model_not_found"),
    "unsupported-field": (ask("Hello?", top_p=0.5), "unsupported_parameter"),
    "tools": (ask("Hello?", tools=[{"type": "function"}]), "unsupported_parameter"),
}


def client(base_url: str, key: str) -> OpenAI:
    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)


def wait(get: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 420) -> Any:
    # Generous: only a failing run waits it out (a fresh worker warms its embedder first,
    # minutes on a loaded 2-core machine).
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out: {value}"
        time.sleep(0.3)


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(row) for row in text.splitlines() if row.strip()]


def test_a_batch_with_bad_lines_completes_and_stays_with_its_tenant(
    openai_server: str, db: Session
) -> None:
    _, key = make_tenant(db, name="sdk-a")
    _, other_key = make_tenant(db, name="sdk-b")
    sdk, other = client(openai_server, key), client(openai_server, other_key)
    rows = [line(cid, body) for cid, body in GOOD.items()]
    rows += [line(cid, body) for cid, (body, _) in BAD.items()]
    rows.insert(2, '{"custom_id": "broken", "method": "POST", "url": ')  # malformed JSON
    upload = sdk.files.create(file=("batch.jsonl", "\n".join(rows).encode()), purpose="batch")
    assert upload.purpose == "batch"
    assert upload.bytes > 0

    batch = sdk.batches.create(
        input_file_id=upload.id, endpoint=URL, completion_window="24h", metadata={"run": "sdk"}
    )
    assert batch.status == "validating"
    assert batch.metadata == {"run": "sdk"}
    batch = wait(lambda: sdk.batches.retrieve(batch.id), lambda b: b.status == "completed")

    total = len(GOOD) + len(BAD) + 1
    counts = batch.request_counts
    errors = jsonl(sdk.files.content(batch.error_file_id).text) if batch.error_file_id else []
    assert (counts.total, counts.completed, counts.failed) == (total, len(GOOD), len(BAD) + 1), (
        errors
    )
    assert batch.in_progress_at
    assert batch.completed_at
    assert batch.output_file_id
    output = jsonl(sdk.files.content(batch.output_file_id).text)
    assert sorted(o["custom_id"] for o in output) == sorted(GOOD)
    for answer in output:
        assert answer["response"]["status_code"] == 200
        assert answer["error"] is None
        completion = answer["response"]["body"]
        assert completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"]["content"]
        assert completion["usage"]["prompt_tokens"] > 0
    by_id = {o["custom_id"]: o["response"]["body"] for o in output}
    assert by_id["pinned"]["model"] == "gpt-4o-mini"
    assert by_id["alias"]["model"] == "gpt-4o-mini"  # gpt-3.5-turbo: the economy tier

    assert batch.error_file_id
    assert sorted(str(e["custom_id"]) for e in errors) == sorted([*BAD, "None"])
    for error in errors:
        body = error["response"]["body"]["error"]
        assert error["response"]["status_code"] == 400
        assert body["message"]
        if error["custom_id"] in BAD:
            assert body["code"] == BAD[error["custom_id"]][1]
        else:
            assert body["code"] == "invalid_json"

    # Another tenant sees none of it.
    for call in (
        lambda: other.files.retrieve(upload.id),
        lambda: other.files.content(upload.id),
        lambda: other.files.delete(upload.id),
        lambda: other.batches.retrieve(batch.id),
        lambda: other.batches.cancel(batch.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert other.batches.list().data == []
    assert other.files.list().data == []
    assert upload.id in {f.id for f in sdk.files.list().data}

    # A second batch, cancelled at once; the list pages newest first.
    second = sdk.batches.create(input_file_id=upload.id, endpoint=URL, completion_window="24h")
    cancelled = sdk.batches.cancel(second.id)
    assert cancelled.status in {"cancelling", "cancelled"}
    cancelled = wait(lambda: sdk.batches.retrieve(second.id), lambda b: b.status == "cancelled")
    assert cancelled.cancelled_at is not None
    with pytest.raises(openai.ConflictError):
        sdk.batches.cancel(batch.id)  # completed: nothing to cancel
    first_page = sdk.batches.list(limit=1)
    assert [b.id for b in first_page.data] == [second.id]
    assert first_page.has_more
    assert [b.id for b in sdk.batches.list(limit=1, after=second.id).data] == [batch.id]
    assert [b.id for b in sdk.batches.list(limit=1)] == [second.id, batch.id]  # pages on

    assert sdk.files.delete(upload.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(upload.id)


def test_a_file_with_no_valid_request_fails_validation(openai_server: str, db: Session) -> None:
    _, key = make_tenant(db, name="sdk-c")
    sdk = client(openai_server, key)
    rows = ["not json", line("a", ask("x"), method="GET"), line("b", ask("x", n=3))]
    upload = sdk.files.create(file=("bad.jsonl", "\n".join(rows).encode()), purpose="batch")
    batch = sdk.batches.create(input_file_id=upload.id, endpoint=URL, completion_window="24h")
    batch = wait(lambda: sdk.batches.retrieve(batch.id), lambda b: b.status != "validating")
    assert batch.status == "failed"
    assert batch.failed_at
    assert batch.errors
    assert [(e.line, e.code) for e in batch.errors.data] == [
        (1, "invalid_json"),
        (2, "invalid_method"),
        (3, "unsupported_parameter"),
    ]
    with pytest.raises(openai.UnprocessableEntityError):
        sdk.batches.create(input_file_id=upload.id, endpoint="/v1/completions",
                           completion_window="24h")  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        sdk.batches.create(input_file_id="file-nope", endpoint=URL, completion_window="24h")


def test_uploads_have_their_own_size_gate(openai_server: str, db: Session) -> None:
    _, key = make_tenant(db, name="sdk-d")
    sdk = client(openai_server, key)
    row = line("x", ask("y" * 1000)) + "\n"
    # Over the JSON body limit but within the file limit: accepted, streamed in parts.
    fits = (row * (MAX_FILE_BYTES // len(row) - 1)).encode()
    assert len(fits) > MAX_BODY_BYTES
    stored = sdk.files.create(file=("fits.jsonl", fits), purpose="batch")
    assert stored.bytes == len(fits)
    assert sdk.files.content(stored.id).content == fits
    with pytest.raises(openai.APIStatusError) as too_big:
        sdk.files.create(file=("big.jsonl", fits + row.encode() * 10), purpose="batch")
    assert too_big.value.status_code == 413
    with pytest.raises(openai.UnprocessableEntityError):
        sdk.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    # The JSON routes keep their own limit.
    jobs = httpx.post(
        openai_server.removesuffix("/v1") + "/v1/jobs",
        headers={"Authorization": f"Bearer {key}"},
        json={"prompt": "y" * MAX_BODY_BYTES},
    )
    assert jobs.status_code == 413


def test_a_chat_completion_is_routed_then_answered_from_the_cache(
    openai_server: str, db: Session
) -> None:
    _, key = make_tenant(db, name="sdk-e")
    sdk = client(openai_server, key)
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What does a load balancer do?"},
    ]
    first = sdk.chat.completions.with_raw_response.create(model="auto", messages=messages)
    answer = first.parse()
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0
    assert first.headers["x-thrifty-cache"] == "miss"
    assert first.headers["x-thrifty-model"] == answer.model
    assert float(first.headers["x-thrifty-cost-usd"]) > 0

    again = sdk.chat.completions.with_raw_response.create(model="auto", messages=messages)
    assert again.headers["x-thrifty-cache"] == "hit"
    assert float(again.headers["x-thrifty-cost-usd"]) == 0
    assert again.parse().choices[0].message.content == answer.choices[0].message.content

    # Streamed: the SDK reads the chunks; the usage comes last when asked for.
    stream = sdk.chat.completions.create(
        model="auto", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    pieces = list(stream)
    assert {chunk.object for chunk in pieces} == {"chat.completion.chunk"}
    text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    assert text == answer.choices[0].message.content
    assert [c.choices[0].finish_reason for c in pieces if c.choices][-1] == "stop"
    assert pieces[-1].usage is not None
    assert pieces[-1].usage.completion_tokens == answer.usage.completion_tokens
    with pytest.raises(openai.UnprocessableEntityError, match="stream_options"):
        sdk.chat.completions.create(
            model="auto", messages=messages, stream=False, stream_options={"include_usage": True}
        )
    with pytest.raises(openai.UnprocessableEntityError, match="gpt-9"):
        sdk.chat.completions.create(model="gpt-9", messages=messages)
