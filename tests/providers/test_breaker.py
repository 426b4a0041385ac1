"""The circuit breaker: a 5xx storm from the simulator opens a provider's circuit, and new
jobs go down their model's fallback chain to another provider, saying so."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.batching import collector
from app.catalog.catalog import Catalog, get_catalog
from app.models import utcnow
from app.providers import breaker, registry
from app.providers.base import ProviderError
from tests.providers.conftest import Sim


@pytest.fixture
def closed(broker: str) -> Iterator[None]:
    breaker.close()
    yield
    breaker.close()


def storm_catalog(sim: Sim) -> Catalog:
    """The test catalog with a breaker that opens after 6 attempts, one attempt per call."""
    catalog = get_catalog()
    openai = catalog.providers["openai"].model_copy(
        update={"base_url": sim.v1, "base_url_env": None, "max_attempts": 1,
                "breaker_min_calls": 6, "breaker_failure_ratio": 0.5}
    )  # fmt: skip
    return catalog.model_copy(update={"providers": {**catalog.providers, "openai": openai}})


def test_a_5xx_storm_opens_the_circuit_and_new_jobs_take_the_chain(
    sim: Sim, closed: None, api: TestClient
) -> None:
    catalog = storm_catalog(sim)
    before = api.post("/v1/jobs", json={"prompt": "Name a prime.", "tier": "economy",
                                        "cache": "bypass"}).json()  # fmt: skip
    assert api.get(f"/v1/jobs/{before['jobs'][0]['id']}").json()["model"] == "gpt-4o-mini"

    adapter = registry.get_provider(catalog, "openai")
    sim.fault(status=503, count=3, path_prefix="/v1/batches")
    sim.fault(status=500, count=3, path_prefix="/v1/batches")
    for _ in range(6):
        with pytest.raises(ProviderError):
            adapter.retrieve("batch_storm")
    adapter.close()
    assert breaker.open_providers(catalog, fresh=True) == {"openai"}

    after = api.post("/v1/jobs", json={"prompt": "Name a prime.", "tier": "economy",
                                       "cache": "bypass"}).json()  # fmt: skip
    job = api.get(f"/v1/jobs/{after['jobs'][0]['id']}").json()
    # gpt-4o-mini's chain: gpt-4.1-mini (OpenAI too, skipped), then claude-haiku-4-5.
    assert job["model"] == "claude-haiku-4-5"
    assert job["provider"] == "anthropic"
    assert (
        "openai's circuit is open (5xx/429 storm), next in gpt-4o-mini's chain"
        in (job["route_reason"])
    )
    assert job["routing"]["fallback"] == (
        "openai's circuit is open (5xx/429 storm): gpt-4o-mini to claude-haiku-4-5"
    )

    # A pinned model stays; a closed circuit routes as before.
    pinned = api.post("/v1/jobs", json={"prompt": "x", "model": "gpt-4o-mini",
                                        "cache": "bypass"}).json()  # fmt: skip
    assert api.get(f"/v1/jobs/{pinned['jobs'][0]['id']}").json()["model"] == "gpt-4o-mini"
    breaker.close("openai")
    again = api.post("/v1/jobs", json={"prompt": "Name a prime.", "tier": "economy",
                                       "cache": "bypass"}).json()  # fmt: skip
    assert api.get(f"/v1/jobs/{again['jobs'][0]['id']}").json()["model"] == "gpt-4o-mini"


def test_answers_that_are_not_a_storm_keep_the_circuit_closed(sim: Sim, closed: None) -> None:
    catalog = storm_catalog(sim)
    adapter = registry.get_provider(catalog, "openai")
    sim.fault(status=500, count=2, path_prefix="/v1/batches")
    for _ in range(2):
        with pytest.raises(ProviderError):
            adapter.retrieve("batch_x")
    for _ in range(4):  # 404s are answers: the provider is up
        with pytest.raises(ProviderError):
            adapter.retrieve("batch_unknown")
    adapter.close()
    # 2 failures of 6 attempts: under the 0.5 ratio
    assert breaker.open_providers(catalog, fresh=True) == frozenset()


def test_jobs_waiting_for_a_provider_whose_circuit_opens_move_down_the_chain(
    sim: Sim, closed: None, api: TestClient, db: Session
) -> None:
    catalog = storm_catalog(sim)
    free = api.post("/v1/jobs", json={"prompt": "Name a prime.", "tier": "economy",
                                      "cache": "bypass"}).json()["jobs"][0]["id"]  # fmt: skip
    pinned = api.post("/v1/jobs", json={"prompt": "Name an even prime.", "model": "gpt-4o-mini",
                                        "cache": "bypass"}).json()["jobs"][0]["id"]  # fmt: skip
    assert api.get(f"/v1/jobs/{free}").json()["state"] == "waiting"

    adapter = registry.get_provider(catalog, "openai")
    sim.fault(status=503, count=6, path_prefix="/v1/batches")
    for _ in range(6):
        with pytest.raises(ProviderError):
            adapter.retrieve("batch_storm")
    adapter.close()
    assert breaker.open_providers(catalog, fresh=True) == {"openai"}

    # The next collect moves the waiting job instead of sending it to the provider that is down.
    assert collector.collect(db, catalog=get_catalog(), now=utcnow() + timedelta(seconds=5)) == []
    db.commit()
    moved = api.get(f"/v1/jobs/{free}").json()
    assert (moved["state"], moved["model"], moved["provider"]) == (
        "waiting", "claude-haiku-4-5", "anthropic",
    )  # fmt: skip
    assert moved["routing"]["fallback"] == (
        "openai's circuit is open (5xx/429 storm): gpt-4o-mini to claude-haiku-4-5"
    )
    assert "next in gpt-4o-mini's chain: claude-haiku-4-5" in moved["route_reason"]
    kept = api.get(f"/v1/jobs/{pinned}").json()
    assert (kept["state"], kept["model"]) == ("waiting", "gpt-4o-mini")
