"""A model removed from the catalog (a restart with a new catalog file): its waiting jobs are
routed again, its pending batches are not sent but routed again, its open batches are still
polled, applied and priced, and other models' windows are not held up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounting import service as accounting_service
from app.batching import collector, repository, submitter
from app.catalog.catalog import Catalog, get_catalog
from app.intake import ingest as intake_ingest
from app.models import BatchState, Job, JobState, ProviderBatch, Tenant
from app.providers.openai_batch import OpenAIBatchProvider
from tests.batching.helpers import simulator_requests, waiting_jobs
from tests.batching.test_submit_and_poll import money, poll_until_ended

GONE = "gpt-4.1-mini"
SUCCESSOR = "gpt-4.1-mini-next"


@pytest.fixture
def provider(simulator: str) -> Iterator[OpenAIBatchProvider]:
    adapter = OpenAIBatchProvider(base_url=simulator, api_key="test", timeout=5.0)
    yield adapter
    adapter.close()


def without_gone(catalog: Catalog) -> Catalog:
    """The catalog after a restart: GONE is no longer listed; its tier has a successor."""
    successor = catalog.model(GONE).model_copy(update={"name": SUCCESSOR})
    models = [m for m in catalog.models if m.name != GONE] + [successor]
    return catalog.model_copy(update={"models": models})


def test_waiting_jobs_of_a_removed_model_are_routed_again_and_other_windows_flush(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    gone = waiting_jobs(db, tenant[0], 3, model=GONE)
    other = waiting_jobs(db, tenant[0], 2, model="gpt-4o")
    catalog = without_gone(get_catalog())

    created = collector.collect(db, catalog=catalog)
    db.commit()

    assert len(created) == 1  # the other window flushed; nothing raised
    batch = db.get(ProviderBatch, created[0])
    assert batch is not None
    assert batch.model == "gpt-4o"
    assert batch.input_per_mtok == catalog.model("gpt-4o").input_per_mtok
    db.expire_all()
    assert {db.get(Job, j.id).state for j in other} == {JobState.batched}  # type: ignore[union-attr]
    requeued = [db.get(Job, j.id) for j in gone]
    assert all(j is not None and j.state == JobState.queued and j.model is None for j in requeued)

    intake_ingest.ingest(db, job_ids=[j.id for j in gone], catalog=catalog)
    db.commit()
    routed = db.execute(select(Job.state, Job.model).where(Job.id.in_([j.id for j in gone])))
    assert set(routed.tuples()) == {(JobState.waiting, SUCCESSOR)}


def test_a_pending_batch_of_a_removed_model_is_not_sent_but_routed_again(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    jobs = waiting_jobs(db, tenant[0], 3, model=GONE)
    created = collector.collect(db, catalog=get_catalog())
    db.commit()

    assert submitter.submit_batch(batch_id=created[0], catalog=without_gone(get_catalog()))

    db.expire_all()
    batch = db.get(ProviderBatch, created[0])
    assert batch is not None
    assert batch.state == BatchState.failed
    assert batch.external_id is None
    assert GONE in (batch.error or "")
    assert {db.get(Job, j.id).state for j in jobs} == {JobState.queued}  # type: ignore[union-attr]


def test_an_open_batch_of_a_removed_model_is_still_polled_applied_and_priced(
    db: Session, tenant: tuple[Tenant, str], provider: OpenAIBatchProvider
) -> None:
    old = get_catalog()
    jobs = waiting_jobs(db, tenant[0], 3, model=GONE)
    created = collector.collect(db, catalog=old)
    db.commit()
    assert submitter.submit(db, batch_id=created[0], provider=provider)
    db.commit()

    # Restarted with the new catalog while the batch is at the provider.
    assert poll_until_ended(db, created[0], provider, without_gone(old)) == BatchState.completed

    for job in jobs:
        db.refresh(job)
        assert job.state == JobState.completed
        assert job.input_tokens is not None
        assert job.output_tokens is not None
        expected = accounting_service.batch_price(
            old.model(GONE), input_tokens=job.input_tokens, output_tokens=job.output_tokens
        )
        assert job.cost_usd == money(expected)


def test_a_pending_batch_of_a_removed_model_that_reached_its_provider_is_adopted_not_resent(
    db: Session, tenant: tuple[Tenant, str], provider: OpenAIBatchProvider, simulator: str
) -> None:
    """A worker killed after the provider accepted the batch but before it recorded so: the
    batch is still pending locally, with an attempt counted. Once its model has left the
    catalog it is not routed again (its jobs would run, and be billed, twice): the provider's
    batch is found and adopted, then polled and applied."""
    old = get_catalog()
    jobs = waiting_jobs(db, tenant[0], 3, model=GONE)
    created = collector.collect(db, catalog=old)
    db.commit()
    assert repository.record_attempt(db, batch_id=created[0]) == 1
    db.commit()
    assert submitter.submit(db, batch_id=created[0], provider=provider, attempt=1)
    db.rollback()  # the worker died before its commit; the provider holds the batch

    assert submitter.submit_batch(batch_id=created[0], catalog=without_gone(old))

    db.expire_all()
    batch = db.get(ProviderBatch, created[0])
    assert batch is not None
    assert batch.state == BatchState.submitted
    assert batch.external_id is not None
    assert poll_until_ended(db, created[0], provider, without_gone(old)) == BatchState.completed
    db.expire_all()
    assert {db.get(Job, j.id).state for j in jobs} == {JobState.completed}  # type: ignore[union-attr]
    sent = simulator_requests(simulator)
    assert {sent[str(j.id)] for j in jobs} == {1}  # in one provider batch, not two
