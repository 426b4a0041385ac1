"""The flex mode: placement by deadline, flex jobs through the simulator over HTTP at the batch
discount, and a flex call the provider refuses (429 resource unavailable) falling back to
realtime at list price, saying so on the job."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.batching import submitter
from app.catalog.catalog import Catalog, get_catalog
from app.ledger import service as ledger_service
from app.models import BatchState, Job, JobMode, JobState, ProviderBatch, RequestedMode
from app.providers import registry
from app.providers.openai_realtime import OpenAIRealtimeProvider
from app.routing import service as routing_service
from app.stack.processes import Supervisor, http_ok, wait_until
from tests.batching.test_cancel_and_modes import collect, ingest, job, submit
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
# A model OpenAI serves on flex (catalog `flex = true`); gpt-4o-mini is not.
FLEX = "gpt-5-nano"
MINI = "gpt-4o-mini"


@pytest.mark.parametrize(
    ("model", "requested", "deadline_in", "expected", "why"),
    [
        (FLEX, "auto", None, "batch", "no deadline"),
        (FLEX, "auto", timedelta(hours=30), "batch", "allows the 24h batch window"),
        (FLEX, "auto", timedelta(hours=2), "flex", "allows flex's expected 600 s latency"),
        (FLEX, "auto", timedelta(minutes=3), "realtime", "sooner than flex's expected"),
        (FLEX, "flex", timedelta(minutes=3), "flex", "flex requested"),
        # A model OpenAI does not serve on flex: auto never picks flex for it, and flex
        # asked for it (the router chose it; a pinned one is a 422) is placed as auto.
        (MINI, "auto", timedelta(hours=2), "realtime", "sooner than the 24h batch window"),
        (MINI, "flex", timedelta(hours=2), "realtime", "gpt-4o-mini (openai) has no flex"),
        # Anthropic has no flex tier: flex is placed as auto would place it.
        ("claude-haiku-4-5", "flex", None, "batch", "has no flex tier; auto: no deadline"),
        ("claude-haiku-4-5", "auto", timedelta(hours=2), "batch", "anthropic has no realtime"),
    ],
)
def test_placement_by_deadline(
    model: str, requested: str, deadline_in: timedelta | None, expected: str, why: str
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    mode, reason = routing_service.choose_mode(
        get_catalog(),
        model=model,
        requested=RequestedMode(requested),
        deadline=now + deadline_in if deadline_in else None,
        now=now,
    )
    assert (mode, why in reason) == (expected, True), reason


@pytest.mark.parametrize("model", ["claude-haiku-4-5", MINI])
def test_flex_for_a_model_without_flex_is_a_422(api: TestClient, model: str) -> None:
    response = api.post("/v1/jobs", json={"prompt": "Hi?", "mode": "flex", "model": model})
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert f"which {model}" in message
    assert FLEX in message  # the models that have it
    assert (
        api.post("/v1/jobs", json={"prompt": "Hi?", "mode": "flex", "model": FLEX}).status_code
        == 202
    )


def test_a_flex_flag_on_a_provider_without_flex_is_refused() -> None:
    catalog = get_catalog()
    haiku = catalog.model("claude-haiku-4-5").model_copy(update={"flex": True})
    data = catalog.model_dump()
    data["models"] = [haiku.model_dump() if m["name"] == haiku.name else m for m in data["models"]]
    with pytest.raises(ValueError, match="provider anthropic has no flex tier"):
        Catalog.model_validate(data)


def run_flex(db: Session, batch_id: uuid.UUID, *, flex_url: str, realtime_url: str) -> None:
    """The flex batch sent as the submitter sends it: the flex adapter (as the registry
    builds it, but at ``flex_url``) with the realtime adapter as its fallback."""
    config = get_catalog().providers["openai"]
    flex = OpenAIRealtimeProvider(
        base_url=flex_url, api_key="t", service_tier="flex", timeout=config.flex_timeout_seconds,
        policy=registry.RetryPolicy(max_attempts=registry.FLEX_ATTEMPTS, initial_wait=0.05),
    )  # fmt: skip
    realtime = OpenAIRealtimeProvider(base_url=realtime_url, api_key="t")
    try:
        assert submitter.run_realtime(
            db, batch_id=batch_id, provider=flex, concurrency=4, catalog=get_catalog(),
            fallback=realtime,
        )  # fmt: skip
        db.commit()
    finally:
        flex.close()
        realtime.close()


def expected_cost(done: Job, mode: JobMode) -> object:
    usage = ledger_service.TokenUsage(
        input_tokens=done.input_tokens or 0,
        output_tokens=done.output_tokens or 0,
        cached_input_tokens=done.cached_input_tokens or 0,
        cache_write_tokens=done.cache_write_tokens or 0,
    )
    return ledger_service.paid_price(get_catalog().model(FLEX), mode, usage)


def flex_jobs(api: TestClient, db: Session, count: int) -> tuple[list[uuid.UUID], uuid.UUID]:
    """``count`` flex jobs asked for through the API, routed and in one flex batch."""
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ids = submit(api, count - 1, mode="flex", model=FLEX)
    ids += submit(api, 1, mode="auto", deadline=soon, model=FLEX)  # auto picks flex too
    ingest(db, ids)
    for job_id in ids:
        assert job(db, job_id).mode == JobMode.flex, job(db, job_id).route_reason
    assert "flex" in (job(db, ids[-1]).route_reason or "")
    (batch_id,) = collect(db)
    batch = db.get(ProviderBatch, batch_id)
    assert batch is not None
    assert batch.mode == JobMode.flex
    return ids, batch_id


def test_flex_jobs_complete_through_the_simulator_at_the_batch_discount(
    api: TestClient, db: Session, simulator: str
) -> None:
    ids, batch_id = flex_jobs(api, db, 3)
    # As the submit task sends it: the registry's flex adapter, at the simulator.
    assert submitter.submit_batch(batch_id=batch_id, catalog=get_catalog())
    for job_id in ids:
        done = job(db, job_id)
        assert done.state == JobState.completed, done.error
        assert done.mode == JobMode.flex
        assert done.cost_usd == expected_cost(done, JobMode.batch)
        assert done.cost_usd < expected_cost(done, JobMode.realtime)
    assert db.get(ProviderBatch, batch_id).state == BatchState.completed  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def no_flex_capacity(supervisor: Supervisor) -> Iterator[str]:
    """A second simulator whose flex tier always answers 429 resource_unavailable."""
    port = free_port()
    argv = [sys.executable, "-m", "app.cli", "simulator", "--port", str(port),
            "--flex-unavailable-rate", "1", "--flex-latency-seconds", "0.05"]  # fmt: skip
    name = f"simulator-no-flex-{port}"
    child = supervisor.start(name, argv, env=dict(os.environ), cwd=ROOT)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=30, what=name)
    yield f"http://127.0.0.1:{port}/v1"
    supervisor.stop(child)


def test_the_simulator_refuses_flex_as_openai_does(no_flex_capacity: str) -> None:
    body = {"model": MINI, "messages": [{"role": "user", "content": "Hi?"}]}
    url = f"{no_flex_capacity}/chat/completions"
    headers = {"Authorization": "Bearer t"}
    refused = httpx.post(url, json={**body, "service_tier": "flex"}, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "resource_unavailable"
    served = httpx.post(url, json=body, headers=headers)  # the default tier is unaffected
    assert served.status_code == 200
    assert served.json()["service_tier"] == "default"


def test_a_refused_flex_call_falls_back_to_realtime_at_list_price_and_says_so(
    api: TestClient, db: Session, simulator: str, no_flex_capacity: str
) -> None:
    ids, batch_id = flex_jobs(api, db, 2)
    run_flex(db, batch_id, flex_url=no_flex_capacity, realtime_url=simulator)
    for job_id in ids:
        done = job(db, job_id)
        assert done.state == JobState.completed, done.error
        assert done.mode == JobMode.realtime
        assert done.cost_usd == expected_cost(done, JobMode.realtime)
        assert submitter.FLEX_FALLBACK in (done.route_reason or "")
        assert (done.routing or {}).get("flex_fallback") == submitter.FLEX_FALLBACK
        shown = api.get(f"/v1/jobs/{job_id}").json()
        assert shown["mode"] == "realtime"
        assert "flex refused" in shown["route_reason"]


def test_the_registry_builds_flex_only_for_openai() -> None:
    catalog = get_catalog()
    flex = registry.get_flex_provider(catalog, "openai")
    flex.close()
    with pytest.raises(ValueError, match="no flex tier"):
        registry.get_flex_provider(catalog, "anthropic")


@pytest.fixture(scope="module")
def flex_elsewhere(supervisor: Supervisor) -> Iterator[str]:
    """A simulator that offers flex on another model only (OpenAI: 400 for the others)."""
    port = free_port()
    argv = [sys.executable, "-m", "app.cli", "simulator", "--port", str(port),
            "--flex-models", "gpt-5-mini"]  # fmt: skip
    name = f"simulator-flex-elsewhere-{port}"
    child = supervisor.start(name, argv, env=dict(os.environ), cwd=ROOT)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=30, what=name)
    yield f"http://127.0.0.1:{port}/v1"
    supervisor.stop(child)


def test_a_model_without_flex_falls_back_to_realtime_and_says_so(
    api: TestClient, db: Session, flex_elsewhere: str
) -> None:
    ids, batch_id = flex_jobs(api, db, 2)
    # The same simulator serves the realtime fallback: only flex is refused for the model.
    run_flex(db, batch_id, flex_url=flex_elsewhere, realtime_url=flex_elsewhere)
    reason = submitter.FLEX_REFUSED["http_400"]
    for job_id in ids:
        done = job(db, job_id)
        assert done.state == JobState.completed, done.error
        assert done.mode == JobMode.realtime
        assert done.cost_usd == expected_cost(done, JobMode.realtime)
        assert reason in (done.route_reason or "")
        assert (done.routing or {}).get("flex_fallback") == reason
