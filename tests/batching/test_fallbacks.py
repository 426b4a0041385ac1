"""Fallback chains after the provider answered, each made to happen by a simulator over real
HTTP: a model the provider no longer serves (404 model_not_found on a batch line and on a
realtime call), a refused request (content_policy_violation) and a prompt too long for the
model (context_length_exceeded) send the job to the next model of its chain, and the job
says so; then it completes there. A pinned model fails with the provider's reason."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.batching import collector, results, submitter
from app.catalog.catalog import get_catalog
from app.models import BatchState, JobMode, JobState, ProviderBatch, Tenant, utcnow
from app.providers.anthropic_batch import AnthropicBatchProvider
from app.providers.base import BatchProvider
from app.providers.openai_batch import OpenAIBatchProvider
from app.providers.openai_realtime import OpenAIRealtimeProvider
from app.stack.processes import Supervisor
from tests.batching.helpers import start_simulator, stop
from tests.batching.test_cancel_and_modes import LATER, job, submit
from tests.factories import make_job

MARKER = "[[refuse-me]]"


@pytest.fixture(scope="module")
def refusing(supervisor: Supervisor) -> Iterator[str]:
    """A simulator that no longer serves gpt-4o-mini and claude-3-5-haiku-latest, refuses
    prompts with MARKER and gives gpt-4.1-mini a 40-token window."""
    name = "simulator-refusing"
    flags = ["--validating-seconds", "0.05", "--processing-seconds", "0.1",
             "--removed-models", "gpt-4o-mini,claude-3-5-haiku-latest", "--refuse-marker", MARKER,
             "--context-limits", "gpt-4.1-mini=40"]  # fmt: skip
    url = start_simulator(supervisor, name, *flags)
    yield url
    stop(supervisor, name)


def collect(db: Session) -> list[uuid.UUID]:
    created = collector.collect(db, catalog=get_catalog(), now=utcnow() + LATER)
    db.commit()
    return created


def through_batch_api(
    db: Session, batch_id: uuid.UUID, url: str, *, anthropic: bool = False,
    attempt: int | None = None,
) -> None:  # fmt: skip
    """Submit a batch to the simulator at ``url`` and poll it until it ends (``attempt``: the
    submit task's attempt; any but 1 first looks for a batch an earlier one made)."""
    provider: BatchProvider = (
        AnthropicBatchProvider(base_url=url, api_key="t")
        if anthropic
        else OpenAIBatchProvider(base_url=url, api_key="t")
    )
    try:
        assert submitter.submit(db, batch_id=batch_id, provider=provider, catalog=get_catalog(),
                                attempt=attempt)  # fmt: skip
        db.commit()
        deadline = time.monotonic() + 30
        while results.poll(db, batch_id=batch_id, provider=provider, catalog=get_catalog()) not in {
            BatchState.completed, BatchState.failed
        }:  # fmt: skip
            db.commit()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        db.commit()
    finally:
        provider.close()


def through_realtime(db: Session, batch_id: uuid.UUID, url: str) -> None:
    provider = OpenAIRealtimeProvider(base_url=url, api_key="t")
    try:
        assert submitter.run_realtime(db, batch_id=batch_id, provider=provider, concurrency=2,
                                      catalog=get_catalog())  # fmt: skip
        db.commit()
    finally:
        provider.close()


def finish(db: Session, job_id: uuid.UUID) -> None:
    """The job's next batch, through the shared test simulator (which serves every model)."""
    (batch_id,) = collect(db)
    assert submitter.submit_batch(batch_id=batch_id, catalog=get_catalog())
    deadline = time.monotonic() + 30
    while job(db, job_id).state not in {JobState.completed, JobState.failed}:
        results.poll_batch(db, batch_id=batch_id, catalog=get_catalog(), backoff=(0.05, 0.1))
        db.commit()
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_model_no_longer_served_on_a_batch_line_takes_the_next_model(
    api: TestClient, db: Session, simulator: str, refusing: str
) -> None:
    (job_id,) = submit(api, tier="economy", mode="batch")
    assert job(db, job_id).model == "gpt-4o-mini"
    (batch_id,) = collect(db)
    through_batch_api(db, batch_id, refusing)

    moved = job(db, job_id)
    assert moved.state == JobState.waiting
    assert (moved.provider, moved.model, moved.mode) == ("openai", "gpt-4.1-mini", JobMode.batch)
    assert moved.routing is not None
    assert moved.routing["fallback"] == (
        "the provider no longer serves gpt-4o-mini (model_not_found): gpt-4o-mini to gpt-4.1-mini"
    )
    assert moved.routing["tried"] == ["gpt-4o-mini"]
    assert moved.routing["chosen"] == "gpt-4.1-mini"
    shown = api.get(f"/v1/jobs/{job_id}").json()
    assert "next in gpt-4o-mini's chain: gpt-4.1-mini" in shown["route_reason"]
    assert shown["routing"]["tried"] == ["gpt-4o-mini"]

    finish(db, job_id)
    done = job(db, job_id)
    assert done.state == JobState.completed, done.error
    assert done.model == "gpt-4.1-mini"
    assert done.result


def test_a_model_anthropic_no_longer_serves_takes_the_next_model(
    api: TestClient, db: Session, refusing: str
) -> None:
    (job_id,) = submit(api, tier="anthropic")
    assert job(db, job_id).model == "claude-3-5-haiku-latest"
    (batch_id,) = collect(db)
    through_batch_api(db, batch_id, refusing, anthropic=True)
    moved = job(db, job_id)
    assert (moved.state, moved.model) == (JobState.waiting, "claude-haiku-4-5")
    assert moved.routing is not None
    assert moved.routing["fallback"] == (
        "the provider no longer serves claude-3-5-haiku-latest (not_found_error): "
        "claude-3-5-haiku-latest to claude-haiku-4-5"
    )


def test_a_model_no_longer_served_on_a_realtime_call_takes_the_next_model(
    api: TestClient, db: Session, refusing: str
) -> None:
    (job_id,) = submit(api, tier="economy", mode="realtime")
    (batch_id,) = collect(db)
    through_realtime(db, batch_id, refusing)
    moved = job(db, job_id)
    assert (moved.state, moved.model, moved.mode) == (
        JobState.waiting, "gpt-4.1-mini", JobMode.realtime,
    )  # fmt: skip
    assert moved.routing is not None
    assert moved.routing["fallback"].startswith("the provider no longer serves gpt-4o-mini")
    # gpt-4.1-mini is served: the micro-batch on it completes.
    (batch_id,) = collect(db)
    through_realtime(db, batch_id, refusing)
    assert job(db, job_id).state == JobState.completed


def test_a_refused_request_goes_down_the_chain_to_another_provider(
    api: TestClient, db: Session, simulator: str, refusing: str
) -> None:
    (job_id,) = submit(api, tier="flagship", mode="realtime",
                       prompt=f"Tell me about {MARKER} please.")  # fmt: skip
    assert job(db, job_id).model == "gpt-4.1"
    (batch_id,) = collect(db)
    through_realtime(db, batch_id, refusing)

    moved = job(db, job_id)
    # gpt-4.1's chain: claude-sonnet-4-5 (Anthropic: Message Batches only, so batch mode).
    assert (moved.state, moved.provider, moved.model, moved.mode) == (
        JobState.waiting, "anthropic", "claude-sonnet-4-5", JobMode.batch,
    )  # fmt: skip
    assert moved.routing is not None
    assert moved.routing["fallback"] == (
        "gpt-4.1 refused the request (content_policy_violation): gpt-4.1 to claude-sonnet-4-5"
    )
    assert "anthropic has no realtime API" in (moved.route_reason or "")
    finish(db, job_id)
    done = job(db, job_id)
    assert done.state == JobState.completed, done.error
    assert done.model == "claude-sonnet-4-5"


def test_a_prompt_too_long_for_the_model_goes_to_a_larger_window(
    api: TestClient, db: Session, refusing: str
) -> None:
    long = "Summarise the following notes about the harbour wall repairs. " * 5  # ~80 tokens
    (job_id,) = submit(api, tier="standard", mode="batch", prompt=long)
    assert job(db, job_id).model == "gpt-4.1-mini"
    (batch_id,) = collect(db)
    through_batch_api(db, batch_id, refusing)
    moved = job(db, job_id)
    assert moved.state == JobState.waiting
    assert moved.model == "gpt-4.1"  # the first of gpt-4.1-mini's chain with a larger window
    assert moved.routing is not None
    assert moved.routing["fallback"] == (
        "the prompt is too long for gpt-4.1-mini (context_length_exceeded): gpt-4.1-mini to gpt-4.1"
    )
    batch = db.get(ProviderBatch, batch_id)
    assert batch is not None
    assert batch.state == BatchState.completed


def test_a_pinned_model_no_longer_served_fails_with_the_providers_reason(
    api: TestClient, db: Session, refusing: str
) -> None:
    (job_id,) = submit(api, model="gpt-4o-mini", mode="batch")
    (batch_id,) = collect(db)
    through_batch_api(db, batch_id, refusing)
    failed = job(db, job_id)
    assert failed.state == JobState.failed
    assert failed.model == "gpt-4o-mini"
    assert "does not exist" in (failed.error or "")


def test_a_job_without_a_routing_record_fails_rather_than_loop(
    db: Session, tenant: tuple[Tenant, str], refusing: str
) -> None:
    # Routed before routing records existed: nothing says which models it tried.
    old = make_job(db, tenant=tenant[0], state=JobState.waiting, routed_ago=LATER)
    old.estimated_tokens, old.estimated_bytes = 10, 500
    db.commit()
    (batch_id,) = collect(db)
    through_batch_api(db, batch_id, refusing)
    failed = job(db, old.id)
    assert (failed.state, failed.model) == (JobState.failed, "gpt-4o-mini")
    assert "does not exist" in (failed.error or "")


def test_an_anthropic_refusal_goes_down_the_chain(
    api: TestClient, db: Session, simulator: str, refusing: str
) -> None:
    # claude-3-5-haiku-latest is gone (not_found_error) -> claude-haiku-4-5, which declines
    # the marked prompt with a message whose stop_reason is "refusal" -> gpt-4.1-mini.
    (job_id,) = submit(api, tier="anthropic", prompt=f"Tell me about {MARKER} please.")
    (batch_id,) = collect(db)
    through_batch_api(db, batch_id, refusing, anthropic=True)
    assert job(db, job_id).model == "claude-haiku-4-5"
    (batch_id,) = collect(db)
    through_batch_api(db, batch_id, refusing, anthropic=True)

    moved = job(db, job_id)
    assert (moved.state, moved.provider, moved.model) == (
        JobState.waiting, "openai", "gpt-4.1-mini",
    )  # fmt: skip
    assert moved.routing is not None
    assert moved.routing["fallback"] == (
        "claude-haiku-4-5 refused the request (refusal): claude-haiku-4-5 to gpt-4.1-mini"
    )
    assert moved.routing["fallback_code"] == "refusal"
    assert moved.routing["tried"] == ["claude-3-5-haiku-latest", "claude-haiku-4-5"]
    assert "stop_reason refusal" in (moved.error or "")
    finish(db, job_id)
    done = job(db, job_id)
    assert (done.state, done.model) == (JobState.completed, "gpt-4.1-mini"), done.error


def test_a_retry_after_an_anthropic_fallback_sends_a_batch_of_the_new_model(
    api: TestClient, db: Session, refusing: str
) -> None:
    # The job's claude-3-5-haiku-latest batch ended (not_found_error) with the same single
    # custom_id the claude-haiku-4-5 batch holds; that batch's retry attempt (which looks
    # for what an earlier attempt may have made) must not adopt the ended one of the other
    # model, but send its own.
    (job_id,) = submit(api, tier="anthropic", prompt="Say hello, please.")
    (first_id,) = collect(db)
    through_batch_api(db, first_id, refusing, anthropic=True)
    first = db.get(ProviderBatch, first_id)
    assert first is not None
    assert (first.model, job(db, job_id).model) == ("claude-3-5-haiku-latest", "claude-haiku-4-5")
    (second_id,) = collect(db)
    through_batch_api(db, second_id, refusing, anthropic=True, attempt=2)
    second = db.get(ProviderBatch, second_id)
    assert second is not None
    assert second.model == "claude-haiku-4-5"
    assert second.external_id is not None
    assert second.external_id != first.external_id
    done = job(db, job_id)
    assert (done.state, done.model) == (JobState.completed, "claude-haiku-4-5"), done.error
