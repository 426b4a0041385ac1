"""Tests for the provider simulator, driven over real HTTP against a uvicorn server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from app.simulator.server import SimulatorSettings, create_app
from app.simulator.summarise import (
    count_prompt_tokens,
    count_tokens,
    simulate_completion,
    split_sentences,
    summarise,
)

SETTINGS = SimulatorSettings(
    validating_seconds=0.2, processing_seconds=0.3, seed=7, cancelling_seconds=0.1
)
AUTH = {"Authorization": "Bearer sk-test"}
MODEL = "gpt-4o-mini"
DOCUMENT = (
    "The city council approved a new transit plan on Tuesday. The plan adds three bus rapid "
    "transit lines and extends the light rail to the airport. Council members said the transit "
    "plan would cut commute times by 20 percent. Funding comes from a half-cent sales tax "
    "approved by voters in 2022. Critics argued the plan ignores suburban residents. "
    "Construction of the first bus line begins next spring. The light rail extension is "
    "expected to open in 2029."
)
TERMINAL = {"completed", "failed", "cancelled", "expired"}


def _start_server(settings: SimulatorSettings) -> tuple[uvicorn.Server, threading.Thread, str]:
    # Port 0 lets the OS pick a free port; we read the bound port back once started.
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("simulator did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server, thread, url = _start_server(SETTINGS)
    yield url
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=10) as http:
        yield http


def _request_line(custom_id: str, content: str, **extra: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra},
    }


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def _sample_requests(count: int) -> list[dict[str, Any]]:
    prompts = [
        f"Summarise the following document in 2-3 sentences.\n\n{DOCUMENT}",
        "What is the capital of France?",
        f"Summarise in one sentence:\n{DOCUMENT}",
        DOCUMENT,
    ]
    return [_request_line(f"req-{i}", prompts[i % len(prompts)]) for i in range(count)]


def _upload(client: httpx.Client, data: bytes, purpose: str = "batch") -> httpx.Response:
    return client.post(
        "/v1/files",
        files={"file": ("input.jsonl", data, "application/jsonl")},
        data={"purpose": purpose},
    )


def _create_batch(client: httpx.Client, data: bytes, **extra: Any) -> dict[str, Any]:
    uploaded = _upload(client, data)
    assert uploaded.status_code == 200, uploaded.text
    response = client.post(
        "/v1/batches",
        json={
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            **extra,
        },
    )
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def _wait_terminal(
    client: httpx.Client, batch_id: str, seen: list[str] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        batch: dict[str, Any] = client.get(f"/v1/batches/{batch_id}").json()
        if seen is not None and (not seen or seen[-1] != batch["status"]):
            seen.append(batch["status"])
        if batch["status"] in TERMINAL:
            return batch
        assert time.monotonic() < deadline, f"batch stuck in {batch['status']}"
        time.sleep(0.02)


def _output_lines(client: httpx.Client, batch: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.get(f"/v1/files/{batch['output_file_id']}/content")
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    return error


def test_healthz_needs_no_auth(base_url: str) -> None:
    response = httpx.get(f"{base_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_file_upload_and_retrieval(client: httpx.Client) -> None:
    data = _jsonl(_sample_requests(2))
    uploaded = _upload(client, data)
    assert uploaded.status_code == 200
    file_object = uploaded.json()
    assert file_object["id"].startswith("file-")
    assert file_object["object"] == "file"
    assert file_object["bytes"] == len(data)
    assert file_object["filename"] == "input.jsonl"
    assert file_object["purpose"] == "batch"
    assert file_object["status"] == "processed"
    assert isinstance(file_object["created_at"], int)

    assert client.get(f"/v1/files/{file_object['id']}").json() == file_object
    content = client.get(f"/v1/files/{file_object['id']}/content")
    assert content.status_code == 200
    assert content.content == data
    _assert_openai_error(client.get("/v1/files/file-missing"), 404)


def test_batch_progresses_and_completes_with_matching_output(client: httpx.Client) -> None:
    records = _sample_requests(6)
    created = _create_batch(client, _jsonl(records), metadata={"job": "lifecycle"})
    assert created["id"].startswith("batch_")
    assert created["object"] == "batch"
    assert created["status"] == "validating"
    assert created["errors"] is None
    assert created["metadata"] == {"job": "lifecycle"}
    assert created["expires_at"] == created["created_at"] + 24 * 3600

    seen = ["validating"]
    batch = _wait_terminal(client, created["id"], seen)
    assert seen == ["validating", "in_progress", "completed"]
    assert batch["request_counts"] == {"total": 6, "completed": 6, "failed": 0}
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert isinstance(batch[stamp], int)
    assert batch["failed_at"] is None
    assert batch["cancelled_at"] is None
    assert batch["error_file_id"] is None

    output_file = client.get(f"/v1/files/{batch['output_file_id']}").json()
    assert output_file["purpose"] == "batch_output"

    lines = _output_lines(client, batch)
    by_id = {line["custom_id"]: line for line in lines}
    assert sorted(by_id) == sorted(record["custom_id"] for record in records)
    assert [line["custom_id"] for line in lines] != [record["custom_id"] for record in records]

    for record in records:
        line = by_id[record["custom_id"]]
        assert line["id"].startswith("batch_req_")
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"]
        body = line["response"]["body"]
        assert body["object"] == "chat.completion"
        assert body["model"] == MODEL
        choice = body["choices"][0]
        assert choice["index"] == 0
        assert choice["message"]["role"] == "assistant"
        assert choice["finish_reason"] == "stop"
        content = choice["message"]["content"]
        messages = record["body"]["messages"]
        assert content == simulate_completion(messages, MODEL).content
        usage = body["usage"]
        assert usage["prompt_tokens"] == count_prompt_tokens(messages) > 0
        assert usage["completion_tokens"] == count_tokens(content) > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_same_input_gives_same_output(client: httpx.Client) -> None:
    data = _jsonl(_sample_requests(5))
    first = _create_batch(client, data)
    second = _create_batch(client, data)

    def answers(batch: dict[str, Any]) -> dict[str, tuple[str, dict[str, int]]]:
        done = _wait_terminal(client, batch["id"])
        assert done["status"] == "completed"
        return {
            line["custom_id"]: (
                line["response"]["body"]["choices"][0]["message"]["content"],
                line["response"]["body"]["usage"],
            )
            for line in _output_lines(client, done)
        }

    assert answers(first) == answers(second)


def test_max_tokens_limits_the_answer(client: httpx.Client) -> None:
    prompt = f"Summarise the following document.\n\n{DOCUMENT}"
    batch = _create_batch(client, _jsonl([_request_line("short", prompt, max_tokens=5)]))
    (line,) = _output_lines(client, _wait_terminal(client, batch["id"]))
    body = line["response"]["body"]
    assert body["usage"]["completion_tokens"] <= 5
    assert body["choices"][0]["finish_reason"] == "length"


def test_invalid_purpose_is_rejected(client: httpx.Client) -> None:
    error = _assert_openai_error(_upload(client, b"{}\n", purpose="fine-tune"), 400)
    assert error["param"] == "purpose"


def test_missing_upload_field_is_openai_style_400(client: httpx.Client) -> None:
    response = client.post("/v1/files", data={"purpose": "batch"})
    _assert_openai_error(response, 400)


def test_bad_jsonl_makes_batch_fail_with_errors(client: httpx.Client) -> None:
    good = _request_line("ok-1", "What is a batch?")
    wrong_method = {**_request_line("ok-2", "Hi?"), "method": "GET"}
    no_model = _request_line("ok-3", "Hi?")
    del no_model["body"]["model"]
    data = (
        json.dumps(good)
        + "\n{not json\n"
        + json.dumps(good)
        + "\n"
        + json.dumps(wrong_method)
        + "\n"
        + json.dumps(no_model)
        + "\n"
    ).encode()
    created = _create_batch(client, data)
    assert created["status"] == "validating"

    batch = _wait_terminal(client, created["id"])
    assert batch["status"] == "failed"
    assert isinstance(batch["failed_at"], int)
    assert batch["output_file_id"] is None
    assert batch["in_progress_at"] is None
    assert batch["errors"]["object"] == "list"
    errors = [(error["line"], error["code"]) for error in batch["errors"]["data"]]
    assert errors == [
        (2, "invalid_json_line"),
        (3, "duplicate_custom_id"),
        (4, "invalid_method"),
        (5, "missing_required_parameter"),
    ]
    assert all(error["message"] for error in batch["errors"]["data"])


def test_empty_file_fails_batch(client: httpx.Client) -> None:
    batch = _wait_terminal(client, _create_batch(client, b"\n")["id"])
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == "empty_file"


def test_invalid_batch_parameters_are_rejected(client: httpx.Client) -> None:
    file_id = _upload(client, _jsonl(_sample_requests(1))).json()["id"]
    base = {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
    wrong_window = client.post("/v1/batches", json={**base, "completion_window": "1h"})
    assert _assert_openai_error(wrong_window, 400)["param"] == "completion_window"
    wrong_endpoint = client.post(
        "/v1/batches",
        json={**base, "endpoint": "/v1/embeddings", "completion_window": "24h"},
    )
    assert _assert_openai_error(wrong_endpoint, 400)["param"] == "endpoint"
    missing = client.post("/v1/batches", json={"endpoint": "/v1/chat/completions"})
    _assert_openai_error(missing, 400)
    unknown_file = client.post(
        "/v1/batches", json={**base, "input_file_id": "file-nope", "completion_window": "24h"}
    )
    _assert_openai_error(unknown_file, 404)


def test_unknown_batch_is_404(client: httpx.Client) -> None:
    _assert_openai_error(client.get("/v1/batches/batch_doesnotexist"), 404)
    unknown_route = _assert_openai_error(client.post("/v1/nowhere"), 404)
    assert unknown_route["message"] == "Invalid URL (POST /v1/nowhere)"
    _assert_openai_error(client.post("/v1/batches/batch_doesnotexist/cancel"), 404)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["absent", "no-key", "wrong-scheme"],
)
def test_missing_auth_is_401(base_url: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=base_url, headers=headers) as anonymous:
        _assert_openai_error(anonymous.get("/v1/batches"), 401)
        _assert_openai_error(_upload(anonymous, b"{}\n"), 401)


def test_cancel_moves_through_cancelling_to_cancelled(client: httpx.Client) -> None:
    created = _create_batch(client, _jsonl(_sample_requests(3)))
    cancelling = client.post(f"/v1/batches/{created['id']}/cancel")
    assert cancelling.status_code == 200
    assert cancelling.json()["status"] == "cancelling"
    assert isinstance(cancelling.json()["cancelling_at"], int)

    batch = _wait_terminal(client, created["id"])
    assert batch["status"] == "cancelled"
    assert isinstance(batch["cancelled_at"], int)
    assert batch["completed_at"] is None
    # Cancelled during validation: nothing ran, so there is nothing to deliver.
    assert batch["output_file_id"] is None
    again = client.post(f"/v1/batches/{created['id']}/cancel")
    assert again.json()["status"] == "cancelled"


def test_cancel_mid_run_delivers_what_already_completed(client: httpx.Client) -> None:
    created = _create_batch(client, _jsonl(_sample_requests(10)))
    deadline = time.monotonic() + 5
    while True:
        batch = client.get(f"/v1/batches/{created['id']}").json()
        if batch["status"] == "in_progress" and batch["request_counts"]["completed"] > 0:
            break
        assert batch["status"] in {"validating", "in_progress"}
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert client.post(f"/v1/batches/{created['id']}/cancel").json()["status"] == "cancelling"

    batch = _wait_terminal(client, created["id"])
    assert batch["status"] == "cancelled"
    done = batch["request_counts"]["completed"]
    assert 0 < done < 10
    assert len(_output_lines(client, batch)) == done


def test_cancel_of_completed_batch_is_rejected(client: httpx.Client) -> None:
    batch = _wait_terminal(client, _create_batch(client, _jsonl(_sample_requests(1)))["id"])
    assert batch["status"] == "completed"
    _assert_openai_error(client.post(f"/v1/batches/{batch['id']}/cancel"), 400)


def test_list_batches_newest_first_with_pagination(client: httpx.Client) -> None:
    data = _jsonl(_sample_requests(1))
    ids = [_create_batch(client, data)["id"] for _ in range(3)]
    newest, middle, oldest = reversed(ids)

    page = client.get("/v1/batches", params={"limit": 2}).json()
    assert page["object"] == "list"
    assert [batch["id"] for batch in page["data"]] == [newest, middle]
    assert page["first_id"] == newest
    assert page["last_id"] == middle
    assert page["has_more"] is True

    next_page = client.get("/v1/batches", params={"limit": 1, "after": middle}).json()
    assert [batch["id"] for batch in next_page["data"]] == [oldest]
    assert next_page["first_id"] == next_page["last_id"] == oldest

    _assert_openai_error(client.get("/v1/batches", params={"limit": 0}), 400)


def test_token_counter_is_deterministic_approximation() -> None:
    assert count_tokens("") == 0
    assert count_tokens("Hello, world!") == 4
    # Two words longer than six characters weigh 1.3 each, rounded up over the text.
    assert count_tokens("internationalization localization") == 3
    messages = [{"role": "user", "content": "Hello, world!"}]
    assert count_prompt_tokens(messages) == 4 + 4 + 3


def test_summary_picks_salient_sentences_in_original_order() -> None:
    sentences = split_sentences(DOCUMENT)
    assert len(sentences) == 7
    summary = summarise(DOCUMENT)
    picked = split_sentences(summary)
    assert len(picked) == 3
    positions = [sentences.index(sentence) for sentence in picked]
    assert positions == sorted(positions)
    assert summarise(DOCUMENT, max_sentences=1) in sentences
    assert count_tokens(summarise(DOCUMENT, max_tokens=30)) <= 30


def test_instruction_and_question_prompts() -> None:
    instructed = simulate_completion(
        [{"role": "user", "content": f"Summarise this in 2 sentences.\n\n{DOCUMENT}"}], MODEL
    )
    assert len(split_sentences(instructed.content)) == 2
    assert "Summarise" not in instructed.content

    answer = simulate_completion([{"role": "user", "content": "Why is the sky blue?"}], MODEL)
    assert answer.content.startswith(f"Answer (simulated by {MODEL}): ")
    assert answer.finish_reason == "stop"
    assert answer == simulate_completion(
        [{"role": "user", "content": [{"type": "text", "text": "Why is the sky blue?"}]}], MODEL
    )
