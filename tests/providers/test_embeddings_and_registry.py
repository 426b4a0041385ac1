"""The embeddings client and the registry that builds adapters from the catalog."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.catalog.catalog import Catalog, get_catalog
from app.providers.anthropic_batch import AnthropicBatchProvider
from app.providers.base import ProviderError, ProviderLimits
from app.providers.openai_batch import OpenAIBatchProvider
from app.providers.openai_embeddings import OpenAIEmbeddings
from app.providers.openai_realtime import OpenAIRealtimeProvider
from app.providers.registry import (
    get_provider,
    get_realtime_provider,
    realtime_concurrency,
)
from app.simulator.chat import embed_text
from tests.providers.conftest import FAST, SECRET, Sim, Sleeps


@pytest.fixture
def embeddings(sim: Sim) -> Iterator[OpenAIEmbeddings]:
    client = OpenAIEmbeddings(
        base_url=sim.v1, api_key=SECRET, model="text-embedding-3-small", dimensions=64,
        batch_size=2, policy=FAST, sleep=Sleeps(),
    )  # fmt: skip
    yield client
    client.close()


def test_embed_returns_one_unit_vector_per_text_in_order(
    embeddings: OpenAIEmbeddings, sim: Sim
) -> None:
    texts = ["alpha beta", "gamma", "delta epsilon", "alpha beta", "zeta"]
    vectors = embeddings.embed(texts)
    assert len(vectors) == 5
    assert all(len(v) == 64 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-6) for v in vectors)
    assert vectors[0] == vectors[3] == pytest.approx(embed_text("alpha beta", 64))
    assert vectors[1] != vectors[2]
    assert sim.calls("POST /v1/embeddings") == 3  # batches of two


def test_embed_retries_a_rate_limit(embeddings: OpenAIEmbeddings, sim: Sim) -> None:
    sim.fault(status=429, retry_after=0.05, path_prefix="/v1/embeddings")
    assert len(embeddings.embed(["one"])) == 1
    assert sim.calls("POST /v1/embeddings") == 2


def test_embed_reports_a_refusal_without_the_key(embeddings: OpenAIEmbeddings, sim: Sim) -> None:
    sim.fault(status=401, path_prefix="/v1/embeddings", message=f"Incorrect API key {SECRET}")
    with pytest.raises(ProviderError) as info:
        embeddings.embed(["one"])
    assert SECRET not in str(info.value)
    assert "Incorrect API key" in str(info.value)


def test_registry_builds_each_kind_with_its_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ANTHROPIC_BASE_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    catalog = get_catalog()
    openai = get_provider(catalog, "openai")
    anthropic = get_provider(catalog, "anthropic")
    realtime = get_realtime_provider(catalog, "local")
    try:
        assert isinstance(openai, OpenAIBatchProvider)
        assert openai.limits == ProviderLimits(50_000, 200 * 1024 * 1024)
        assert isinstance(anthropic, AnthropicBatchProvider)
        assert anthropic.limits == ProviderLimits(100_000, 256 * 1024 * 1024)
        assert isinstance(realtime, OpenAIRealtimeProvider)
        assert realtime_concurrency(catalog, "local") == 8
        client = anthropic._http.client
        assert str(client.base_url) == "http://127.0.0.1:9999/"
        assert client.headers["x-api-key"] == "sk-ant-from-env"
        assert client.headers["anthropic-version"] == "2023-06-01"
    finally:
        for adapter in (openai, anthropic, realtime):
            adapter.close()
    with pytest.raises(ValueError, match="no batch API"):
        get_provider(catalog, "local")
    with pytest.raises(ValueError, match="no OpenAI-compatible chat API"):
        get_realtime_provider(catalog, "anthropic")


def test_catalog_limits_can_only_lower_the_published_ones() -> None:
    data = get_catalog().model_dump()
    data["providers"]["openai"].update(max_requests=1_000, max_bytes=10**12)
    provider = get_provider(Catalog.model_validate(data), "openai")
    try:
        assert provider.limits == ProviderLimits(1_000, 200 * 1024 * 1024)
    finally:
        provider.close()


def test_unknown_provider_kind_is_rejected() -> None:
    data = get_catalog().model_dump()
    data["providers"]["openai"]["kind"] = "carrier_pigeon"
    with pytest.raises(ValueError, match="kind"):
        Catalog.model_validate(data)


def test_keys_and_urls_may_come_from_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("THRIFTY_ANTHROPIC_BASE_URL", raising=False)
    (tmp_path / ".env").write_text(
        "ANTHROPIC_API_KEY=sk-ant-from-dotenv\nTHRIFTY_ANTHROPIC_BASE_URL=http://127.0.0.1:7777\n"
    )
    monkeypatch.chdir(tmp_path)
    config = get_catalog().providers["anthropic"]
    assert config.api_key() == "sk-ant-from-dotenv"
    assert config.resolved_base_url() == "http://127.0.0.1:7777"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")  # the environment wins
    assert config.api_key() == "sk-ant-from-env"
