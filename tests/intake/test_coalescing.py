"""Coalescing: identical requests (same tenant, exact cache key) are sent to the provider once.

Jobs are submitted through the API in this process, ingested here against the real database
(with an embedder that fails, so only the exact layer runs and no model is loaded), and the
one pipeline test runs the collector, submitter and poller here against the simulator.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.batching import collector, submitter, sweeper
from app.catalog.catalog import get_catalog
from app.embeddings.base import EmbeddingError, Vectors
from app.intake.ingest import ingest
from app.jobs import repository as job_repository
from app.jobs import transitions
from app.kit.db import get_sessionmaker
from app.ledger import service as ledger_service
from app.models import Job, JobState, WebhookDelivery, utcnow
from app.providers.openai_batch import OpenAIBatchProvider
from tests.batching.helpers import simulator_requests
from tests.batching.test_submit_and_poll import poll_until_ended

MINI = "gpt-4o-mini"
HOOK = "http://127.0.0.1:9/hook"


class NoEmbedder:
    """Semantic lookups fail (the exact layer, where coalescing works, still runs)."""

    name, dimensions = "none", 384

    def embed(self, texts: list[str]) -> Vectors:
        raise EmbeddingError("no embedder in these tests")


def submit(api: TestClient, prompts: list[str], **extra: Any) -> list[uuid.UUID]:
    body = [{"prompt": p, "model": MINI, "webhook_url": HOOK, **extra} for p in prompts]
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return [uuid.UUID(job["id"]) for job in response.json()["jobs"]]


def run_ingest(session: Session, ids: list[uuid.UUID]) -> None:
    ingest(session, job_ids=ids, catalog=get_catalog(), embedder=NoEmbedder)
    session.commit()


def jobs(db: Session, ids: list[uuid.UUID]) -> list[Job]:
    db.expire_all()
    found = {job.id: job for job in db.scalars(select(Job).where(Job.id.in_(ids)))}
    return [found[i] for i in ids]


def leaders_and_followers(rows: list[Job]) -> tuple[dict[str, Job], dict[uuid.UUID, uuid.UUID]]:
    """The leader of each prompt, and each follower's leader; every job is one or the other."""
    leaders = {" ".join((job.prompt or "").split()): job for job in rows if job.coalesce_leader}
    follows = {job.id: job.coalesced_with for job in rows if job.coalesced_with is not None}
    assert len(leaders) + len(follows) == len(rows)
    return leaders, follows


def test_identical_requests_follow_one_leader_in_a_submission_and_across_submissions(
    db: Session, api: TestClient
) -> None:
    first = submit(api, ["What is a cat?", "What is a cat?", "What is a dog?", " What  is a cat?"])
    other_scope = submit(api, ["What is a cat?"], temperature=0.7)
    bypass = submit(api, ["What is a cat?"], cache="bypass")
    run_ingest(db, first + other_scope)

    rows = jobs(db, first)
    leaders, follows = leaders_and_followers(rows)
    # The same text, its whitespace normalised, is the same exact key: one leader each.
    assert set(leaders) == {"What is a cat?", "What is a dog?"}
    cat, dog = leaders["What is a cat?"], leaders["What is a dog?"]
    assert sorted(follows.values()) == [cat.id, cat.id]
    assert {j.state for j in rows} == {JobState.waiting}
    # Another scope (a temperature) is another key; a job that skips the cache is never
    # coalesced (it was routed at submission, with no key).
    (scoped,) = jobs(db, other_scope)
    assert scoped.coalesce_leader
    assert scoped.coalesced_with is None
    (skipper,) = jobs(db, bypass)
    assert not skipper.coalesce_leader
    assert skipper.coalesced_with is None

    # A later submission follows the live leader.
    later = submit(api, ["What is a dog?"])
    run_ingest(db, later)
    assert jobs(db, later)[0].coalesced_with == dog.id

    # Followers are in no window: the collector sees the leaders and the bypass job only.
    windows = job_repository.open_windows(db)
    assert sum(w.size for w in windows) == 4
    out = api.get(f"/v1/jobs/{later[0]}").json()
    assert out["state"] == "waiting"
    assert out["coalesced_with"] == str(dog.id)


def test_a_leader_elected_by_a_concurrent_ingest_is_followed(
    db: Session, api: TestClient, simulator: str
) -> None:
    """Two submissions of the same texts, ingested at once by two connections: exactly one
    request per distinct text reaches the provider, and every other job completes from it."""
    texts = [f"Name a colour that rhymes with {word}." for word in ("bed", "bean", "flu")]
    mine = submit(api, texts + texts[:1])
    theirs = submit(api, texts[::-1])

    # Ingest A elects its leaders and holds them uncommitted; ingest B, at the same time,
    # finds no live leader, elects its own and waits on the unique index for A to end...
    session_a = get_sessionmaker()()
    ingest(session_a, job_ids=mine, catalog=get_catalog(), embedder=NoEmbedder)
    done = threading.Event()

    def other_process() -> None:
        with get_sessionmaker()() as session_b:
            run_ingest(session_b, theirs)
        done.set()

    thread = threading.Thread(target=other_process)
    thread.start()
    time.sleep(1.0)
    assert not done.is_set(), "the second election must wait for the first"
    # ... A commits: B's election fails, B looks again and follows A's leaders.
    session_a.commit()
    session_a.close()
    thread.join(timeout=30)
    assert done.is_set()

    everyone = mine + theirs
    leaders, follows = leaders_and_followers(jobs(db, everyone))
    assert set(leaders) == set(texts)
    assert {j.id for j in leaders.values()} <= set(mine)
    assert set(follows.values()) <= {j.id for j in leaders.values()}

    # The windows are due; the leaders go to the simulator in one batch, and come back.
    db.execute(
        update(Job).where(Job.id.in_(everyone)).values(routed_at=utcnow() - timedelta(seconds=5))
    )
    db.commit()
    catalog = get_catalog()
    (batch_id,) = collector.collect(db, catalog=catalog)
    db.commit()
    provider = OpenAIBatchProvider(base_url=simulator, api_key="test", timeout=5.0)
    try:
        assert submitter.submit(db, batch_id=batch_id, provider=provider)
        db.commit()
        poll_until_ended(db, batch_id, provider, catalog)
    finally:
        provider.close()

    sent = simulator_requests(simulator)
    assert {i: sent[str(i)] for i in everyone if sent[str(i)]} == {
        j.id: 1 for j in leaders.values()
    }
    rows = {job.id: job for job in jobs(db, everyone)}
    savings = ledger_service.savings_of(db, job_ids=everyone)
    for follower_id, leader_id in follows.items():
        follower, leader = rows[follower_id], rows[leader_id]
        assert follower.state == leader.state == JobState.completed
        assert follower.result == leader.result
        assert follower.result
        assert (follower.model, follower.input_tokens) == (leader.model, leader.input_tokens)
        assert follower.cost_usd == 0
        assert follower.naive_cost_usd == leader.naive_cost_usd
        saved = savings[follower_id]
        assert saved.coalescing == leader.cost_usd > 0
        assert saved.total == follower.naive_cost_usd - follower.cost_usd
        assert savings[leader_id].coalescing == 0
    # Every job's webhook fires, the followers' too.
    hooked = set(
        db.scalars(select(WebhookDelivery.job_id).where(WebhookDelivery.job_id.in_(everyone)))
    )
    assert hooked == set(everyone)
    out = api.get(f"/v1/jobs/{next(iter(follows))}").json()
    assert out["state"] == "completed"
    assert out["coalesced_with"] in {str(i) for i in follows.values()}
    assert Decimal(out["cost"]["savings_usd"]["coalescing"]) > 0
    # The stats have the layer: what every follower avoided, the layers adding up.
    stats = api.get("/v1/stats").json()
    layers = stats["savings_usd"]
    assert Decimal(layers["coalescing"]) == sum(rows[i].cost_usd or 0 for i in follows.values())
    assert sum(Decimal(v) for k, v in layers.items() if k != "total") == Decimal(stats["saved_usd"])


def test_concurrent_ingest_tasks_elect_one_leader_per_text(db: Session, api: TestClient) -> None:
    """The same race, free-running: two threads ingest two submissions of the same texts."""
    texts = [f"Spell the number {n} in French." for n in range(8)]
    first, second = submit(api, texts), submit(api, texts[::-1])
    barrier = threading.Barrier(2)

    def worker(ids: list[uuid.UUID]) -> None:
        with get_sessionmaker()() as session:
            barrier.wait()
            run_ingest(session, ids)

    threads = [threading.Thread(target=worker, args=(ids,)) for ids in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    leaders, follows = leaders_and_followers(jobs(db, first + second))
    assert set(leaders) == set(texts)
    assert len(follows) == len(texts)
    assert set(follows.values()) == {j.id for j in leaders.values()}


def test_a_cancelled_or_failed_leader_does_not_strand_its_followers(
    db: Session, api: TestClient
) -> None:
    ids = submit(api, ["Why is the sky blue?"] * 3)
    run_ingest(db, ids)
    leaders, follows = leaders_and_followers(jobs(db, ids))
    (leader,) = leaders.values()
    followers = list(follows)

    assert api.delete(f"/v1/jobs/{leader.id}").status_code == 200
    # Its followers are queued again, with no route and no leader, for ingest.
    again = [(j.state, j.coalesced_with, j.model) for j in jobs(db, followers)]
    assert again == [(JobState.queued, None, None)] * 2
    run_ingest(db, followers)
    leaders, follows = leaders_and_followers(jobs(db, followers))
    (new_leader,) = leaders.values()
    ((follower_id, followed),) = follows.items()
    assert followed == new_leader.id
    follower = jobs(db, [follower_id])[0]

    transitions.fail(
        db, job_ids=[new_leader.id], error="refused", at=utcnow(), from_state=JobState.waiting
    )
    db.commit()
    (alone,) = jobs(db, [follower.id])
    assert alone.state == JobState.queued
    run_ingest(db, [follower.id])
    (alone,) = jobs(db, [follower.id])
    assert alone.state == JobState.waiting
    assert alone.coalesce_leader

    # The sweeper's safety net: a follower whose leader ended some other way is re-driven.
    stray = submit(api, ["Why is the sky blue?"])
    run_ingest(db, stray)
    assert jobs(db, stray)[0].coalesced_with == alone.id
    db.execute(update(Job).where(Job.id == alone.id).values(state=JobState.failed))
    db.commit()
    counts = sweeper.sweep(db, stale_after=timedelta(minutes=5))
    db.commit()
    assert counts["stranded_followers"] == 1
    assert jobs(db, stray)[0].state == JobState.queued
