"""Embedders: the local model from the installed package, and the OpenAI-compatible adapter
against a stand-in for the remote API (the one thing outside this machine)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from app.embeddings.base import EmbeddingError
from app.embeddings.local import LocalEmbedder, bundled_model_path
from app.embeddings.openai import MAX_INPUTS_PER_REQUEST, OpenAIEmbedder


def test_the_local_model_ships_in_the_package_and_embeds_in_batches() -> None:
    assert (bundled_model_path() / "model.safetensors").exists()
    model = LocalEmbedder()
    vectors = model.embed(["How do I bake bread?", "How can I bake bread?", "Tax on shares"])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert model.embed([]).shape == (0, 384)


def fake_api(requests: list[dict[str, object]], *, dims: int = 384) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append({"path": request.url.path, "auth": request.headers.get("authorization"),
                         **body})  # fmt: skip
        data = [
            {"index": i, "embedding": [float(len(text)), 1.0] + [0.0] * (dims - 2)}
            for i, text in reversed(list(enumerate(body["input"])))
        ]
        return httpx.Response(200, json={"data": data, "model": body["model"]})

    return httpx.MockTransport(handler)


def test_the_openai_adapter_sends_lists_and_orders_by_index() -> None:
    seen: list[dict[str, object]] = []
    embedder = OpenAIEmbedder(
        base_url="https://embeddings.example/v1", model="text-embedding-3-small",
        api_key="sk-test", transport=fake_api(seen),
    )  # fmt: skip
    texts = [f"text {'x' * i}" for i in range(MAX_INPUTS_PER_REQUEST + 3)]
    vectors = embedder.embed(texts)
    assert vectors.shape == (len(texts), 384)
    assert len(seen) == 2  # one request per 256 inputs, never one per text
    assert seen[0]["path"] == "/v1/embeddings"
    assert seen[0]["auth"] == "Bearer sk-test"
    assert seen[0]["dimensions"] == 384
    # rows come back in input order even though the API listed them reversed
    lengths = [len(t) for t in texts]
    expected = np.array([[n, 1.0] for n in lengths]) / np.linalg.norm(
        np.array([[n, 1.0] for n in lengths]), axis=1, keepdims=True
    )
    assert np.allclose(vectors[:, :2], expected, atol=1e-5)


def test_the_openai_adapter_reports_errors() -> None:
    wrong_size = OpenAIEmbedder(
        base_url="https://e.example/v1", model="m", api_key=None, transport=fake_api([], dims=10)
    )
    with pytest.raises(EmbeddingError, match="shape"):
        wrong_size.embed(["a"])
    refused = OpenAIEmbedder(
        base_url="https://e.example/v1", model="m", api_key=None,
        transport=httpx.MockTransport(lambda r: httpx.Response(429, text="slow down")),
    )  # fmt: skip
    with pytest.raises(EmbeddingError, match="429"):
        refused.embed(["a"])
