"""Generation parameters a job sets reach the provider's request body."""

from __future__ import annotations

import json

import httpx

from app.kit.prompts import ChatMessage
from app.providers.anthropic_format import message_params
from app.providers.base import BatchRequest
from app.providers.openai_batch import OpenAIBatchProvider

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there."},
]


def test_openai_batch_lines_carry_temperature_and_max_tokens(
    simulator: str, provider_http: httpx.Client
) -> None:
    provider = OpenAIBatchProvider(base_url=simulator, api_key="test")
    try:
        handle = provider.submit(
            reference="temperature-check",
            model="gpt-4o-mini",
            requests=[
                BatchRequest("warm", MESSAGES, 50, 0.7),
                BatchRequest("default", MESSAGES, None),
            ],
        )
    finally:
        provider.close()

    content = provider_http.get(f"files/{handle.input_file_id}/content").text
    bodies = {
        line["custom_id"]: line["body"] for line in map(json.loads, content.splitlines()) if line
    }
    assert bodies["warm"]["temperature"] == 0.7
    assert bodies["warm"]["max_tokens"] == 50
    assert "temperature" not in bodies["default"]


def test_anthropic_params_carry_temperature() -> None:
    warm = message_params(
        model="claude-3-5-haiku-latest", request=BatchRequest("a", MESSAGES, None, 0.2)
    )
    plain = message_params(
        model="claude-3-5-haiku-latest", request=BatchRequest("b", MESSAGES, None)
    )
    assert warm["temperature"] == 0.2
    assert warm["system"] == "Be brief."
    assert "temperature" not in plain
