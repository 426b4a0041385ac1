"""The exact-match cache, exercised through ingest on the real Postgres."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accounting import service as accounting_service
from app.cache import service as cache_service
from app.catalog.catalog import get_catalog
from app.intake import ingest as intake_ingest
from app.models import CacheEntry, Job, JobState, Tenant
from tests.conftest import make_tenant
from tests.factories import make_job

QUESTION = "What is the boiling point\nof water at  sea level?"
QUESTION_REFORMATTED = "  What is the   boiling point of water\tat sea level?\n"
DOCUMENT = (
    "The river wall in Millbrook was repaired three weeks early.\n\n"
    "Repairs cost 1.2 million pounds, paid from the regional flood fund."
)
DOCUMENT_REFORMATTED = (
    "The river  wall in Millbrook was repaired three weeks early. "
    "Repairs cost 1.2 million pounds,\npaid from the regional flood fund.  "
)
ANSWER = "About 100 degrees Celsius."
INPUT_TOKENS, OUTPUT_TOKENS = 40, 12


def money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.00000001"), rounding=ROUND_HALF_UP)


def queued(
    db: Session,
    tenant: Tenant,
    *,
    prompt: str | None = None,
    document: str | None = None,
    instruction: str | None = None,
    system: str | None = None,
    max_output_tokens: int | None = None,
    tier_hint: str | None = None,
) -> Job:
    job = make_job(db, tenant=tenant, prompt=prompt, document=document, instruction=instruction)
    job.system = system
    job.max_output_tokens = max_output_tokens
    job.tier_hint = tier_hint
    db.flush()
    return job


def ingest(db: Session, *jobs: Job) -> None:
    handled = intake_ingest.ingest(db, job_ids=[j.id for j in jobs], catalog=get_catalog())
    assert handled == len(jobs)
    db.commit()
    for job in jobs:
        db.refresh(job)


def seed(db: Session, source: Job, *, result: str = ANSWER) -> CacheEntry:
    """Ingest ``source`` (a miss) and store an answer under its key, as the poller would."""
    ingest(db, source)
    assert source.state == JobState.waiting
    assert source.cache_key is not None
    assert source.model is not None
    cache_service.store_many(
        db,
        [
            cache_service.CacheWrite(
                tenant_id=source.tenant_id,
                cache_key=source.cache_key,
                model=source.model,
                result=result,
                source_job_id=source.id,
                input_tokens=INPUT_TOKENS,
                output_tokens=OUTPUT_TOKENS,
                cache_mode=source.cache_mode,
                prompt=source.prompt,
                document=source.document,
            )
        ],
    )
    answered(source, result)
    db.commit()
    return db.scalars(select(CacheEntry).where(CacheEntry.source_job_id == source.id)).one()


def answered(source: Job, result: str) -> None:
    """The source ends with its answer, as the poller ends it in the transaction that writes
    the cache: no longer a live leader that identical jobs would ride (coalescing)."""
    source.state = JobState.completed
    source.result = result


def assert_hit(db: Session, job: Job, entry: CacheEntry) -> None:
    assert job.state == JobState.completed
    assert job.cache_hit is True
    assert job.cached_from_job_id == entry.source_job_id
    assert job.result == entry.result
    assert job.model == entry.model
    assert job.cache_key == entry.cache_key
    assert (job.input_tokens, job.output_tokens) == (INPUT_TOKENS, OUTPUT_TOKENS)
    assert job.cost_usd == Decimal(0)
    naive = accounting_service.naive_price(
        get_catalog(), input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS
    )
    assert job.naive_cost_usd is not None
    assert job.naive_cost_usd > 0
    assert job.naive_cost_usd == money(naive)
    assert job.completed_at is not None
    assert job.provider_batch_id is None


def assert_miss(job: Job) -> None:
    assert job.state == JobState.waiting
    assert job.cache_hit is False
    assert job.cached_from_job_id is None
    assert job.result is None
    assert job.cost_usd is None
    assert job.completed_at is None


def test_a_reformatted_prompt_is_answered_from_the_cache_at_ingest(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    source = queued(db, tenant[0], prompt=QUESTION)
    entry = seed(db, source)
    twin = queued(db, tenant[0], prompt=QUESTION_REFORMATTED)
    db.commit()

    ingest(db, twin)

    assert_hit(db, twin, entry)
    db.refresh(entry)
    assert entry.hit_count == 1
    db.refresh(source)
    assert source.state == JobState.completed  # the source is untouched
    assert source.cache_hit is not True


def test_a_reformatted_document_with_the_same_instruction_hits(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    source = queued(db, tenant[0], document=DOCUMENT, instruction="summarise", system="Be  brief.")
    entry = seed(db, source, result="Millbrook's wall was repaired early.")
    # The same instruction under its other spelling, the same system prompt reformatted.
    twins = [
        queued(db, tenant[0], document=DOCUMENT_REFORMATTED, instruction="summarise",
               system="Be brief."),
        queued(db, tenant[0], document=DOCUMENT, instruction="summarize", system="Be brief. "),
    ]  # fmt: skip
    db.commit()

    ingest(db, *twins)

    for twin in twins:
        assert_hit(db, twin, entry)
    db.refresh(entry)
    assert entry.hit_count >= 1


@pytest.mark.parametrize(
    "variant",
    [
        "another tenant",
        "another instruction",
        "another system prompt",
        "a system prompt where there was none",
        "another output limit",
        "another tier",
    ],
)
def test_a_request_outside_the_entry_scope_misses(
    db: Session, tenant: tuple[Tenant, str], variant: str
) -> None:
    if variant == "another tenant":
        source = queued(db, tenant[0], prompt=QUESTION)
        other = make_tenant(db, name="globex")[0]
        probe = queued(db, other, prompt=QUESTION)
    elif variant == "another instruction":
        source = queued(db, tenant[0], document=DOCUMENT, instruction="summarise")
        probe = queued(db, tenant[0], document=DOCUMENT, instruction="tldr")
    elif variant == "another system prompt":
        source = queued(db, tenant[0], prompt=QUESTION, system="Answer in French.")
        probe = queued(db, tenant[0], prompt=QUESTION, system="Answer in German.")
    elif variant == "a system prompt where there was none":
        source = queued(db, tenant[0], prompt=QUESTION)
        probe = queued(db, tenant[0], prompt=QUESTION, system="Answer in French.")
    elif variant == "another output limit":
        source = queued(db, tenant[0], prompt=QUESTION, max_output_tokens=200)
        probe = queued(db, tenant[0], prompt=QUESTION, max_output_tokens=20)
    else:
        source = queued(db, tenant[0], prompt=QUESTION)
        probe = queued(db, tenant[0], prompt=QUESTION, tier_hint="premium")
    entry = seed(db, source)
    db.commit()

    ingest(db, probe)

    assert_miss(probe)
    assert probe.cache_key is not None
    assert probe.cache_key != entry.cache_key or probe.tenant_id != entry.tenant_id
    db.refresh(entry)
    assert entry.hit_count == 0


def test_store_many_keeps_the_first_answer_for_a_key(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    source = queued(db, tenant[0], prompt=QUESTION)
    ingest(db, source)
    assert source.cache_key is not None

    def write(result: str, key: str) -> cache_service.CacheWrite:
        return cache_service.CacheWrite(
            tenant_id=tenant[0].id,
            cache_key=key,
            model="gpt-4.1-mini",
            result=result,
            source_job_id=source.id,
            input_tokens=INPUT_TOKENS,
            output_tokens=OUTPUT_TOKENS,
            cache_mode=source.cache_mode,
            prompt=source.prompt,
            document=source.document,
        )

    cache_service.store_many(db, [write("first", source.cache_key)])
    answered(source, "first")
    db.commit()
    cache_service.store_many(db, [write("second", source.cache_key)])
    db.commit()
    # Within one call, the earlier write of a key wins too.
    other_key = "0" * 64
    cache_service.store_many(db, [write("one", other_key), write("two", other_key)])
    db.commit()

    entries = {e.cache_key: e for e in db.scalars(select(CacheEntry))}
    assert set(entries) == {source.cache_key, other_key}
    assert entries[source.cache_key].result == "first"
    assert entries[other_key].result == "one"

    # A later job asking the same question gets the first answer.
    twin = queued(db, tenant[0], prompt=QUESTION_REFORMATTED)
    db.commit()
    ingest(db, twin)
    assert twin.result == "first"
