"""Coalescing beyond exact copies sent at once: a lightly edited copy of a document whose
original is still in flight follows it (checked as the cache checks a near-duplicate), and a
job placed by ``auto`` with a distant deadline (patient) rides a slower leader, detached by
the sweeper and sent on its own when the leader has not been answered in time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.batching import collector, submitter, sweeper
from app.catalog.catalog import get_catalog
from app.ledger import service as ledger_service
from app.models import CostRecord, Job, JobMode, JobState, utcnow
from app.providers.openai_batch import OpenAIBatchProvider
from tests.batching.helpers import simulator_requests
from tests.batching.test_submit_and_poll import poll_until_ended
from tests.intake.test_coalescing import MINI, jobs, run_ingest

ARTICLE = (
    "The city council of Bristol approved a budget of 120 million pounds on Tuesday after a "
    "debate that lasted more than six hours in the main chamber. Council leader Anna Morgan "
    "said the plan would pay for 45 new teachers, repairs to 12 libraries and a bus route "
    "linking the harbour to the northern estates. Opposition members argued that the rise in "
    "council tax of 4.9 percent would fall hardest on pensioners and young families, and "
    "proposed an amendment that would have cut the senior staff budget instead. The "
    "amendment was defeated by 38 votes to 27. Local business groups welcomed the transport "
    "plans but warned that parking charges in the centre could drive shoppers to retail "
    "parks outside the city. The budget takes effect in April and will be reviewed in the "
    "autumn, when the council expects new figures on school numbers and housing demand."
)
# A syndicated copy: a dateline and a credit added, two words changed, every figure kept.
SYNDICATED = (
    "LONDON (Wire Service) - "
    + ARTICLE.replace("argued", "said").replace("welcomed", "praised")
    + "\n\nThis article first appeared on Wire Service."
)
# The same article with one figure changed: another request, never a copy.
CHANGED = ARTICLE.replace("120 million", "125 million")


def submit_documents(api: TestClient, documents: list[str], **extra: Any) -> list[uuid.UUID]:
    body = [{"document": d, "model": MINI, **extra} for d in documents]
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return [uuid.UUID(job["id"]) for job in response.json()["jobs"]]


def test_a_near_duplicate_of_a_document_in_flight_follows_it(
    db: Session, api: TestClient, simulator: str
) -> None:
    (original,) = submit_documents(api, [ARTICLE], mode="batch")
    run_ingest(db, [original])
    copies = submit_documents(api, [SYNDICATED, CHANGED], mode="batch")
    run_ingest(db, copies)
    first, syndicated, changed = jobs(db, [original, *copies])
    assert first.coalesce_leader
    assert syndicated.coalesced_with == original
    assert not syndicated.coalesce_leader
    assert changed.coalesced_with is None  # a changed figure is not the same document
    assert changed.coalesce_leader

    db.execute(
        update(Job)
        .where(Job.id.in_([original, *copies]))
        .values(routed_at=utcnow() - timedelta(seconds=5))
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
    assert (sent[str(original)], sent[str(changed.id)], sent[str(syndicated.id)]) == (1, 1, 0)
    first, syndicated, changed = jobs(db, [original, *copies])
    assert syndicated.state == first.state == JobState.completed
    assert syndicated.result == first.result
    assert syndicated.cost_usd == 0
    record = db.get(CostRecord, syndicated.id)
    assert record is not None
    assert record.answered_by == "coalesced"
    saved = ledger_service.savings_of(db, job_ids=[syndicated.id])[syndicated.id]
    assert saved.coalescing > 0


def test_a_patient_job_rides_a_batch_leader_and_is_detached_when_it_runs_late(
    db: Session, api: TestClient
) -> None:
    catalog = get_catalog()
    margin = catalog.providers["openai"].escalation_margin_seconds
    (leader,) = submit_documents(api, [ARTICLE], mode="batch")
    run_ingest(db, [leader])
    soon = (datetime.now(UTC) + timedelta(seconds=margin / 3)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    (patient,) = submit_documents(api, [ARTICLE], deadline=later)
    (hurried,) = submit_documents(api, [ARTICLE], deadline=soon)
    (explicit,) = submit_documents(api, [ARTICLE], mode="realtime")
    run_ingest(db, [patient, hurried, explicit])
    rows = {job.id: job for job in jobs(db, [leader, patient, hurried, explicit])}
    # auto placed all three realtime (the deadline is inside the batch window, and the model
    # has no flex); only the patient one, whose deadline is beyond the margin, rides the
    # batch leader. The others are sent at once, each alone (the batch leader holds the key).
    assert {rows[i].mode for i in (patient, hurried, explicit)} == {JobMode.realtime}
    assert rows[patient].coalesced_with == leader
    assert rows[hurried].coalesced_with is None
    assert rows[explicit].coalesced_with is None

    # The leader's batch does not end; once the patient job's deadline is within the margin,
    # the sweeper detaches it onto its own realtime path before the deadline.
    deadline = rows[patient].deadline
    assert deadline is not None
    early = sweeper.sweep(db, stale_after=timedelta(hours=1), catalog=catalog)
    db.commit()
    assert early["escalated_jobs"] == 0
    at = deadline - timedelta(seconds=margin / 2)
    found = sweeper.sweep(db, stale_after=timedelta(hours=1), catalog=catalog, now=at)
    db.commit()
    assert found["escalated_jobs"] == 1
    (detached,) = jobs(db, [patient])
    assert detached.state == JobState.waiting
    assert detached.coalesced_with is None
    assert detached.mode == JobMode.realtime
    escalation = (detached.routing or {})["escalation"]
    assert escalation["from_leader"] == str(leader)
    assert datetime.fromisoformat(escalation["at"]) < deadline
    assert "the identical request it followed had not been answered" in (
        detached.route_reason or ""
    )
    # In its window now: the collector claims it for a realtime batch.
    db.execute(
        update(Job).where(Job.id == patient).values(routed_at=utcnow() - timedelta(seconds=5))
    )
    db.commit()
    collector.collect(db, catalog=catalog)
    db.commit()
    db.expire_all()
    assert db.scalar(select(Job.state).where(Job.id == patient)) == JobState.batched


def test_among_many_documents_in_flight_a_copy_finds_its_own_original(
    db: Session, api: TestClient
) -> None:
    # The in-flight search probes the band-key index of every job in flight; what it finds is
    # narrowed to the tenant's live leaders of the copy's scope. The same article in flight
    # under another instruction shares every band key, but is another request.
    unrelated = [
        "A storm closed the coastal road for two days while engineers inspected the sea wall.",
        "The orchestra announced a winter season of eight concerts with two new commissions.",
    ]
    leaders = submit_documents(api, [ARTICLE, *unrelated], mode="batch")
    (translated,) = submit_documents(api, [ARTICLE], mode="batch", instruction="Translate it.")
    run_ingest(db, [*leaders, translated])
    (copy,) = submit_documents(api, [SYNDICATED], mode="batch")
    (copy_translated,) = submit_documents(
        api, [SYNDICATED], mode="batch", instruction="Translate it."
    )
    (copy_listed,) = submit_documents(api, [SYNDICATED], mode="batch", instruction="List names.")
    run_ingest(db, [copy, copy_translated, copy_listed])
    rows = {job.id: job for job in jobs(db, [*leaders, translated, copy, copy_translated,
                                              copy_listed])}  # fmt: skip
    assert all(rows[i].coalesce_leader for i in [*leaders, translated])
    assert rows[copy].coalesced_with == leaders[0]
    assert rows[copy_translated].coalesced_with == translated
    # nothing of its scope is in flight: it leads
    assert rows[copy_listed].coalesced_with is None
    assert rows[copy_listed].coalesce_leader
