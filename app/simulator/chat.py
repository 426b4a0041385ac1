"""OpenAI-compatible realtime endpoints: ``POST /v1/chat/completions`` and ``/v1/embeddings``.

Chat answers come from the same deterministic summariser as batch lines, and ``usage`` is
counted from the very text returned. Embeddings are a hashed bag of words, L2-normalised, so
texts sharing words are close and the same text always gets the same vector.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import secrets
import struct
import time
from collections.abc import Sequence

from fastapi import APIRouter, Request

from app.simulator.common import (
    FLEX_UNAVAILABLE_MESSAGE,
    LINE_ERROR_MESSAGE,
    APIError,
    SimulatorSettings,
    refusal,
    request_fails,
)
from app.simulator.prompt_cache import PROMPT_CACHE
from app.simulator.summarise import count_prompt_tokens, count_tokens, simulate_completion
from app.simulator.wire import ChatCompletion, CreateEmbeddingResponse, Embedding, JSONObject

_WORD_RE = re.compile(r"\w+")
_MAX_EMBEDDING_INPUTS = 2048


def max_tokens_of(body: JSONObject) -> int | None:
    """The output limit of a realtime request; an invalid one is a 400."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise APIError(400, f"Invalid '{key}': expected an integer >= 1.", param=key)
        return value
    return None


def validate_chat(body: object) -> tuple[str, list[JSONObject], int | None]:
    """The model, messages and output limit of a chat request, or a 400 naming the problem."""
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "Missing required parameter: 'model'.", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(
            400, "Invalid 'messages': expected a non-empty array of messages.", param="messages"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in {
            "system", "developer", "user", "assistant", "tool"
        }:  # fmt: skip
            raise APIError(
                400,
                f"Invalid 'messages[{index}]': expected an object with a valid 'role'.",
                param=f"messages[{index}]",
            )
    if body.get("stream"):
        raise APIError(400, "The simulator does not support 'stream': true.", param="stream")
    if body.get("n") not in (None, 1):
        raise APIError(400, "The simulator supports only n=1.", param="n")
    return model, messages, max_tokens_of(body)


def chat_completion(
    settings: SimulatorSettings, body: object, *, request_key: str
) -> ChatCompletion:
    """A ``chat.completion`` object for ``body``, or a 400 when it is invalid or the error
    rate picks ``request_key``."""
    model, messages, max_tokens = validate_chat(body)
    refused = refusal(settings, model, messages)
    if refused is not None:
        raise refused
    if request_fails(settings, request_key):
        raise APIError(400, LINE_ERROR_MESSAGE.format(rate=settings.error_rate))
    key = body.get("prompt_cache_key") if isinstance(body, dict) else None
    completion = completion_object(
        f"chatcmpl-{secrets.token_hex(15)[:29]}",
        int(time.time()),
        model,
        messages,
        max_tokens,
        prompt_cache_key=key if isinstance(key, str) else None,
    )
    completion["service_tier"] = "flex" if is_flex(body) else "default"
    return completion


def is_flex(body: object) -> bool:
    return isinstance(body, dict) and body.get("service_tier") == "flex"


async def serve_flex(settings: SimulatorSettings, rng: random.Random, model: object) -> None:
    """A flex call for a model without flex is a 400 (``flex_models``); any other waits
    ``flex_latency_seconds``, then may find no capacity: a 429 with OpenAI's
    ``resource_unavailable`` error, at ``flex_unavailable_rate``."""
    if settings.flex_models is not None and model not in settings.flex_models:
        raise APIError(400, f"Flex is not available for the model {model!r}.", param="service_tier")
    if settings.flex_latency_seconds:
        await asyncio.sleep(settings.flex_latency_seconds)
    if settings.flex_unavailable_rate and rng.random() < settings.flex_unavailable_rate:
        raise APIError(
            429, FLEX_UNAVAILABLE_MESSAGE, code="resource_unavailable", error_type="requests"
        )


def completion_object(
    completion_id: str,
    created: int,
    model: str,
    messages: Sequence[JSONObject],
    max_tokens: int | None,
    *,
    prompt_cache_key: str | None = None,
) -> ChatCompletion:
    """The summariser's answer to ``messages`` as a ``chat.completion``, usage matching text;
    a prefix the prompt cache holds is reported as ``cached_tokens`` (``prompt_cache.py``).

    Realtime calls and batch output lines both answer with it.
    """
    completion = simulate_completion(messages, model, max_tokens)
    prompt_tokens = count_prompt_tokens(messages)
    completion_tokens = count_tokens(completion.content)
    cached = PROMPT_CACHE.openai_cached_tokens(
        model=model, messages=messages, cache_key=prompt_cache_key, prompt_tokens=prompt_tokens
    )
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.content, "refusal": None},
                "logprobs": None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
        "system_fingerprint": "fp_simulator",
    }


def embed_text(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector: signed hashed bag of lower-cased words."""
    vector = [0.0] * dimensions
    words = _WORD_RE.findall(text.lower()) or [""]
    for word in words:
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = sum(v * v for v in vector) ** 0.5
    if norm == 0:  # words cancelled out; any fixed unit vector keeps it deterministic
        vector[0], norm = 1.0, 1.0
    return [v / norm for v in vector]


def _inputs(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return list(value)
        if all(isinstance(item, int) for item in value):  # one pre-tokenised input
            return [" ".join(f"t{item}" for item in value)]
        if all(isinstance(item, list) and all(isinstance(t, int) for t in item) for item in value):
            return [" ".join(f"t{t}" for t in item) for item in value]
    raise APIError(
        400, "Invalid 'input': expected a string or a non-empty array of strings.", param="input"
    )


def embeddings(settings: SimulatorSettings, body: object) -> CreateEmbeddingResponse:
    """An embeddings list response for ``body``."""
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "Missing required parameter: 'model'.", param="model")
    texts = _inputs(body.get("input"))
    if len(texts) > _MAX_EMBEDDING_INPUTS:
        raise APIError(
            400, f"'input' may hold at most {_MAX_EMBEDDING_INPUTS} items.", param="input"
        )
    dimensions = body.get("dimensions") or settings.embedding_dimensions
    if not isinstance(dimensions, int) or dimensions < 1 or dimensions > 4096:
        raise APIError(400, "Invalid 'dimensions'.", param="dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in {"float", "base64"}:
        raise APIError(400, "Invalid 'encoding_format'.", param="encoding_format")
    data: list[Embedding] = []
    for index, text in enumerate(texts):
        vector = embed_text(text, dimensions)
        value: list[float] | str = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(count_tokens(text) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def json_body(request: Request) -> object:
    """The parsed JSON body, of any shape; unparseable bytes are a 400."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise APIError(400, "We could not parse the JSON body of your request.") from None


def router(settings: SimulatorSettings) -> APIRouter:
    """The realtime routes (mounted under ``/v1`` behind bearer auth)."""
    routes = APIRouter()
    flex_dice = random.Random(settings.seed)

    @routes.post("/chat/completions", response_model=None)
    async def create_chat_completion(request: Request) -> ChatCompletion:
        body = await json_body(request)
        if is_flex(body):
            await serve_flex(
                settings, flex_dice, body.get("model") if isinstance(body, dict) else None
            )
        key = json.dumps(body.get("messages") if isinstance(body, dict) else body, sort_keys=True)
        return chat_completion(settings, body, request_key=key)

    @routes.post("/embeddings", response_model=None)
    async def create_embeddings(request: Request) -> CreateEmbeddingResponse:
        return embeddings(settings, await json_body(request))

    return routes
