"""An input no reachable model can hold is a 422 with the reason, before anything is stored:
longer than the context window of the model the job pins, or of every model when it pins
none (a tier falls back to whichever model holds the input). An OpenAI batch line that long
is refused alone, as OpenAI refuses it."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.frontdoor import batches
from app.frontdoor.translate import LineError
from app.jobs.schemas import JobIn
from app.models import Job, Tenant

# About 200,000 tokens (four characters a token): more than gpt-4o-mini's 128,000.
LONG = "word " * 160_000


def largest_context() -> int:
    return max(model.context_tokens for model in get_catalog().models)


def test_an_input_longer_than_the_pinned_models_context_is_a_422(
    api: TestClient, db: Session
) -> None:
    response = api.post("/v1/jobs", json={"document": LONG, "model": "gpt-4o-mini"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert "tokens, more than gpt-4o-mini's context window of 128000" in (error["message"])
    # Unpinned, a long-context model holds it.
    assert api.post("/v1/jobs", json={"document": LONG}).status_code == 202
    # As a shared system prompt with a pinned model, in a list: the job is named, and
    # nothing of the list is stored.
    before = db.scalar(select(func.count()).select_from(Job))
    system = "x" * 20_000  # the longest system prompt, plus a long prompt
    jobs = [
        {"prompt": "Hi?", "system": system, "model": "gpt-4o-mini"},
        {"prompt": LONG, "system": system, "model": "gpt-4o-mini"},
    ]
    response = api.post("/v1/jobs", json=jobs)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith("jobs[1]: the input")
    assert db.scalar(select(func.count()).select_from(Job)) == before


def test_an_input_longer_than_every_models_context_is_a_422(api: TestClient) -> None:
    tokens = largest_context() + 1_000
    response = api.post("/v1/jobs", json={"document": "w" * (tokens * 4), "tier": "economy"})
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    largest = max(get_catalog().models, key=lambda m: m.context_tokens)
    assert "tokens, more than any model's context window" in message
    assert f"(the largest: {largest.name}, {largest.context_tokens})" in message


def test_an_openai_batch_line_too_long_for_its_model_is_refused_alone(
    tenant: tuple[Tenant, str],
) -> None:
    def line(content: str, custom_id: str) -> bytes:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}
        request = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
        return json.dumps({**request, "body": body}).encode()

    seen: set[str] = set()

    def check(raw: bytes) -> object:
        return batches._check_line(
            raw, endpoint="/v1/chat/completions", seen=seen, catalog=get_catalog(),
            tenant=tenant[0],
        )[1]  # fmt: skip

    refused = check(line(LONG, "long"))
    assert isinstance(refused, LineError)
    assert refused.code == "context_length_exceeded"
    assert "gpt-4o-mini's context window" in refused.message
    assert isinstance(check(line("Hi?", "short")), JobIn)
