"""The semantic layer through ingest on the real Postgres+pgvector with the real MiniLM model."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from app.cache import repository
from app.cache import service as cache_service
from app.cache.repository import EntryRow
from app.catalog.catalog import get_catalog
from app.config import get_settings
from app.embeddings.base import Embedder, Vectors
from app.embeddings.local import LocalEmbedder
from app.embeddings.openai import OpenAIEmbedder
from app.intake import ingest as intake_ingest
from app.models import CacheEntry, CacheSettings, Job, JobEmbedding, JobState, Tenant, utcnow
from tests.conftest import free_port, make_tenant
from tests.factories import make_job

QUESTION = "How can I learn to play the guitar quickly?"
PARAPHRASE = "How do I learn to play the guitar quickly?"
OTHER = "How can I learn to play the piano quickly?"
ANSWER = "Practise chords every day."

SENTENCES = [
    "The city council approved the new budget for the harbour district on Tuesday evening.",
    "Officials said the money would pay for repairs to the sea wall and two new ferry piers.",
    "Residents had complained for years about flooding along the waterfront during storms.",
    "The mayor, Helen Park, called the vote a turning point for the neighbourhood.",
    "Construction is expected to start in the spring and to last about eighteen months.",
    "Local businesses welcomed the decision but asked for help during the building work.",
    "The council will publish a detailed timetable for the works next month.",
    "Opposition members argued that the plan did not do enough for affordable housing.",
]
ARTICLE = " ".join(SENTENCES * 4)


@pytest.fixture(scope="session")
def minilm() -> LocalEmbedder:
    return LocalEmbedder()


class CountingEmbedder:
    """The real model, counting calls: ingest must embed a whole chunk in one call."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.calls: list[int] = []

    def embed(self, texts: list[str]) -> Vectors:
        self.calls.append(len(texts))
        return self.inner.embed(texts)


@pytest.fixture
def embedder(minilm: LocalEmbedder) -> CountingEmbedder:
    return CountingEmbedder(minilm)


def job(db: Session, tenant: Tenant, **fields: object) -> Job:
    prompt = fields.pop("prompt", None)
    document = fields.pop("document", None)
    made = make_job(db, tenant=tenant, prompt=prompt, document=document)  # type: ignore[arg-type]
    for name, value in fields.items():
        setattr(made, name, value)
    db.flush()
    return made


def ingest(db: Session, embedder: Embedder, *jobs: Job) -> None:
    intake_ingest.ingest(
        db, job_ids=[j.id for j in jobs], catalog=get_catalog(), embedder=lambda: embedder
    )
    db.commit()
    for j in jobs:
        db.refresh(j)


def answer(db: Session, source: Job, result: str = ANSWER) -> CacheEntry | None:
    """Store an answer for ``source`` as the poller does; returns the entry written."""
    assert source.cache_key is not None
    cache_service.store_many(
        db,
        [
            cache_service.CacheWrite(
                tenant_id=source.tenant_id,
                cache_key=source.cache_key,
                model=source.model or "gpt-4o-mini",
                result=result,
                source_job_id=source.id,
                input_tokens=10,
                output_tokens=5,
                cache_mode=source.cache_mode,
                prompt=source.prompt,
                document=source.document,
            )
        ],
    )
    # The poller ends the source in the same transaction: it is no longer a live leader
    # that identical jobs would ride (coalescing).
    source.state, source.result = JobState.completed, result
    db.commit()
    return db.scalars(select(CacheEntry).where(CacheEntry.source_job_id == source.id)).first()


def seeded(db: Session, embedder: Embedder, tenant: Tenant, **fields: object) -> CacheEntry:
    source = job(db, tenant, **fields)
    ingest(db, embedder, source)
    assert source.state == JobState.waiting
    entry = answer(db, source)
    assert entry is not None
    return entry


def test_a_paraphrase_hits_with_its_similarity_and_source_job(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    entry = seeded(db, embedder, tenant[0], prompt=QUESTION)
    assert entry.embedding is not None
    assert entry.request_text == QUESTION

    again = job(db, tenant[0], prompt=PARAPHRASE)
    ingest(db, embedder, again)

    assert again.state == JobState.completed
    assert again.cache_hit is True
    assert again.result == ANSWER
    assert again.cached_from_job_id == entry.source_job_id
    assert again.cache_similarity is not None
    assert 0.9 <= again.cache_similarity < 1.0
    db.refresh(entry)
    assert entry.hit_count == 1
    assert entry.last_hit_at is not None


def test_a_different_question_misses(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    seeded(db, embedder, tenant[0], prompt=QUESTION)
    other = job(db, tenant[0], prompt=OTHER)
    ingest(db, embedder, other)
    assert other.state == JobState.waiting
    assert other.cache_hit is False


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("How many calories are in 2 boiled eggs?", "How many calories are in 3 boiled eggs?"),
        ("Can I run a marathon without training?", "Can I run a marathon with training?"),
    ],
)
def test_a_changed_number_or_negation_is_rejected_above_the_threshold(
    db: Session,
    tenant: tuple[Tenant, str],
    embedder: CountingEmbedder,
    minilm: LocalEmbedder,
    first: str,
    second: str,
) -> None:
    cache_service.update_policy(db, tenant_id=tenant[0].id, values={"prompt_threshold": 0.8})
    vectors = minilm.embed([first, second])
    assert float(vectors[0] @ vectors[1]) >= 0.8  # the embedding alone would hit
    seeded(db, embedder, tenant[0], prompt=first)
    changed = job(db, tenant[0], prompt=second)
    ingest(db, embedder, changed)
    assert changed.state == JobState.waiting


def test_no_lookup_crosses_a_tenant_or_a_scope(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    seeded(db, embedder, tenant[0], prompt=QUESTION)
    other_tenant, _ = make_tenant(db, name="globex")
    elsewhere = job(db, other_tenant, prompt=QUESTION)
    other_system = job(db, tenant[0], prompt=PARAPHRASE, system="Answer in French.")
    other_tier = job(db, tenant[0], prompt=PARAPHRASE, tier_hint="premium")
    other_limit = job(db, tenant[0], prompt=PARAPHRASE, max_output_tokens=20)
    ingest(db, embedder, elsewhere, other_system, other_tier, other_limit)
    for missed in (elsewhere, other_system, other_tier, other_limit):
        assert missed.state == JobState.waiting, missed.prompt


def test_one_chunk_of_two_tenants_finds_each_its_own_entries(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    # A chunk's prompts are searched in one statement and its documents' band keys probed in
    # one: each query must still get its own tenant's entry, not the other's.
    other_tenant, _ = make_tenant(db, name="initech")
    mine = seeded(db, embedder, tenant[0], prompt=QUESTION)
    theirs = seeded(db, embedder, other_tenant, prompt=QUESTION)
    my_doc = seeded(db, embedder, tenant[0], document=ARTICLE, instruction="summarise")
    their_doc = seeded(db, embedder, other_tenant, document=ARTICLE, instruction="summarise")
    edited = ARTICLE.replace("Tuesday evening", "Tuesday night", 1)
    jobs = [
        job(db, tenant[0], prompt=PARAPHRASE),
        job(db, other_tenant, prompt=PARAPHRASE),
        job(db, tenant[0], prompt=OTHER),
        job(db, tenant[0], document=edited, instruction="summarise"),
        job(db, other_tenant, document=edited, instruction="summarise"),
    ]
    ingest(db, embedder, *jobs)
    sources = [j.cached_from_job_id for j in jobs]
    assert sources == [
        mine.source_job_id, theirs.source_job_id, None,
        my_doc.source_job_id, their_doc.source_job_id,
    ]  # fmt: skip
    assert jobs[2].state == JobState.waiting


def test_a_tenant_with_a_small_share_of_the_index_still_finds_its_entry(
    db: Session,
    tenant: tuple[Tenant, str],
    embedder: CountingEmbedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another tenant's entries, in the same scope, lie nearer the query than this tenant's
    # one entry: the first ef_search rows the HNSW index yields are all theirs. Filtered
    # after the scan, that would leave nothing; the iterative scan goes on until it finds
    # this tenant's rows (issue 14).
    mine = seeded(db, embedder, tenant[0], prompt=QUESTION)
    other_tenant, _ = make_tenant(db, name="umbrella")
    near = np.asarray(embedder.embed([PARAPHRASE])[0], dtype=np.float32)
    noisy = near + np.random.default_rng(3).normal(0, 0.002, (1500, near.size))
    vectors = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    assert float((vectors @ near).min()) > float(np.dot(mine.embedding, near))  # type: ignore[arg-type]
    rows: list[EntryRow] = [
        EntryRow(
            id=uuid.uuid4(), tenant_id=other_tenant.id, cache_key=f"{i:064d}", model="m",
            result="not yours", source_job_id=uuid.uuid4(), input_tokens=0, output_tokens=0,
            hit_count=0, created_at=utcnow(), last_hit_at=None, scope_key=mine.scope_key,
            kind="prompt", request_text=PARAPHRASE, embedding=vector.tolist(), lsh_bands=None,
        )
        for i, vector in enumerate(vectors)
    ]  # fmt: skip
    repository.insert_many(db, rows)
    db.execute(text("ANALYZE cache_entries"))
    db.commit()
    monkeypatch.setattr(get_settings(), "cache_ef_search", 10)
    monkeypatch.setattr(get_settings(), "cache_exact_below", 0)  # HNSW, not the exact search

    again = job(db, tenant[0], prompt=PARAPHRASE)
    ingest(db, embedder, again)

    assert again.cached_from_job_id == mine.source_job_id
    assert again.result == ANSWER


def test_one_embedding_call_per_ingest_chunk_and_the_vector_is_stored_once(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    jobs = [job(db, tenant[0], prompt=f"Name a famous {thing}.") for thing in
            ("river", "mountain", "painter", "novel", "bridge")]  # fmt: skip
    ingest(db, embedder, *jobs)
    assert embedder.calls == [5]
    saved = {row.job_id: row for row in db.scalars(select(JobEmbedding))}
    assert set(saved) == {j.id for j in jobs}

    entry = answer(db, jobs[0])
    assert embedder.calls == [5]  # the write reuses the ingest vector
    assert entry is not None
    assert entry.embedding is not None
    assert np.allclose(np.asarray(entry.embedding), np.asarray(saved[jobs[0].id].embedding))
    assert db.get(JobEmbedding, jobs[0].id) is None  # kept only until the write


def test_an_exact_hit_needs_no_embedding(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    seeded(db, embedder, tenant[0], prompt=QUESTION)
    embedder.calls.clear()
    again = job(db, tenant[0], prompt=QUESTION)
    ingest(db, embedder, again)
    assert again.state == JobState.completed
    assert again.cache_similarity == 1.0
    assert embedder.calls == []


def test_sampling_bypasses_the_semantic_layer_unless_opted_in(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    seeded(db, embedder, tenant[0], prompt=QUESTION, temperature=0.7)
    sampled = job(db, tenant[0], prompt=PARAPHRASE, temperature=0.7)
    opted_in = job(db, tenant[0], prompt=PARAPHRASE, temperature=0.7, semantic_cache=True)
    greedy = job(db, tenant[0], prompt=PARAPHRASE, temperature=0.0)
    ingest(db, embedder, sampled, opted_in, greedy)
    assert sampled.state == JobState.waiting
    assert opted_in.state == JobState.completed
    assert greedy.state == JobState.waiting  # temperature is part of the scope


def test_semantic_cache_false_turns_the_layer_off_for_one_request(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    seeded(db, embedder, tenant[0], prompt=QUESTION)
    off = job(db, tenant[0], prompt=PARAPHRASE, semantic_cache=False)
    ingest(db, embedder, off)
    assert off.state == JobState.waiting


def test_bypass_neither_reads_nor_writes(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    entry = seeded(db, embedder, tenant[0], prompt=QUESTION)
    bypass = job(db, tenant[0], prompt=QUESTION, cache_mode="bypass")
    ingest(db, embedder, bypass)
    assert bypass.state == JobState.waiting
    assert bypass.cache_key is None  # so the poller writes nothing
    assert db.scalars(select(CacheEntry)).all() == [entry]


def test_refresh_skips_the_read_and_replaces_the_answer(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    old = seeded(db, embedder, tenant[0], prompt=QUESTION)
    refresh = job(db, tenant[0], prompt=QUESTION, cache_mode="refresh")
    ingest(db, embedder, refresh)
    assert refresh.state == JobState.waiting
    assert refresh.cache_key == old.cache_key
    answer(db, refresh, result="A newer answer.")
    entries = db.scalars(select(CacheEntry)).all()
    assert len(entries) == 1
    db.refresh(entries[0])
    assert entries[0].result == "A newer answer."
    assert entries[0].source_job_id == refresh.id
    assert entries[0].embedding is not None


def test_an_edited_copy_of_a_document_hits(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    entry = seeded(db, embedder, tenant[0], document=ARTICLE)
    edited = (
        "Harbour budget approved\n\n"
        + ARTICLE.replace(". ", ".\n\n")
        + (" A council spokesperson declined to comment further.")
    )
    copy = job(db, tenant[0], document=edited)
    ingest(db, embedder, copy)
    assert copy.state == JobState.completed
    assert copy.cached_from_job_id == entry.source_job_id


def test_documents_are_found_by_their_band_keys_without_an_embedding(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    entry = seeded(db, embedder, tenant[0], document=ARTICLE)
    assert entry.embedding is None
    assert entry.lsh_bands is not None
    assert len(entry.lsh_bands) == 42
    copy = job(db, tenant[0], document="UPDATED\n\n" + ARTICLE)
    renumbered = job(db, tenant[0], document=ARTICLE.replace("two new", "three new", 1))
    ingest(db, embedder, copy, renumbered)
    assert embedder.calls == []  # no document was embedded
    assert copy.state == JobState.completed
    assert copy.cached_from_job_id == entry.source_job_id
    assert copy.cache_similarity is not None
    assert 0.5 <= copy.cache_similarity < 1.0
    assert renumbered.state == JobState.waiting  # a changed figure is another document


def test_a_different_article_that_embeds_alike_is_rejected(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder, minilm: LocalEmbedder
) -> None:
    """The model reads ~256 tokens: same opening, different story after it -> must miss."""
    opening = " ".join(SENTENCES * 2)
    first = opening + "".join(
        f" Engineers inspected pier {i} and reported that its timber needed replacing."
        for i in range(20)
    )
    second = opening + "".join(
        f" A later vote reversed decision {i} after councillor {i + 40} changed sides."
        for i in range(20)
    )
    vectors = minilm.embed([first, second])
    assert float(vectors[0] @ vectors[1]) > 0.95
    seeded(db, embedder, tenant[0], document=first)
    other = job(db, tenant[0], document=second)
    ingest(db, embedder, other)
    assert other.state == JobState.waiting


def test_the_document_instruction_is_part_of_the_scope(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    seeded(db, embedder, tenant[0], document=ARTICLE)
    headline = job(db, tenant[0], document=ARTICLE + " ", instruction="headline")
    ingest(db, embedder, headline)
    assert headline.state == JobState.waiting


def test_expired_entries_are_not_returned(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    entry = seeded(db, embedder, tenant[0], prompt=QUESTION)
    cache_service.update_policy(db, tenant_id=tenant[0].id, values={"ttl_seconds": 60})
    db.execute(
        update(CacheEntry)
        .where(CacheEntry.id == entry.id)
        .values(created_at=utcnow() - timedelta(minutes=5))
    )
    db.commit()
    exact, similar = job(db, tenant[0], prompt=QUESTION), job(db, tenant[0], prompt=PARAPHRASE)
    ingest(db, embedder, exact, similar)
    assert exact.state == JobState.waiting
    assert similar.state == JobState.waiting


def test_the_least_recently_used_entries_are_evicted_past_max_entries(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    cache_service.update_policy(db, tenant_id=tenant[0].id, values={"max_entries": 2})
    first = seeded(db, embedder, tenant[0], prompt="What is the tallest tree species?")
    second = seeded(db, embedder, tenant[0], prompt="Who wrote the Odyssey?")
    reused = job(db, tenant[0], prompt="What is the tallest tree species?")
    ingest(db, embedder, reused)  # an exact hit makes `first` recently used
    assert reused.cache_hit
    seeded(db, embedder, tenant[0], prompt="How far away is the Moon?")
    left = {e.source_job_id for e in db.scalars(select(CacheEntry))}
    assert left == {first.source_job_id} | (left - {second.source_job_id})
    assert second.source_job_id not in left
    assert len(left) == 2


def test_a_tenant_threshold_changes_what_hits(
    db: Session, tenant: tuple[Tenant, str], embedder: CountingEmbedder
) -> None:
    seeded(db, embedder, tenant[0], prompt=QUESTION)
    cache_service.update_policy(db, tenant_id=tenant[0].id, values={"prompt_threshold": 0.999})
    strict = job(db, tenant[0], prompt=PARAPHRASE)
    ingest(db, embedder, strict)
    assert strict.state == JobState.waiting
    cache_service.update_policy(
        db, tenant_id=tenant[0].id, values={"semantic_enabled": False, "prompt_threshold": None}
    )
    assert db.get(CacheSettings, tenant[0].id) is not None
    embedder.calls.clear()
    disabled = job(db, tenant[0], prompt=PARAPHRASE)
    ingest(db, embedder, disabled)
    assert disabled.state == JobState.waiting
    assert embedder.calls == []  # no vector for a tenant without the semantic layer


def test_an_unreachable_embedding_api_leaves_the_exact_layer_working(
    db: Session, tenant: tuple[Tenant, str], minilm: LocalEmbedder
) -> None:
    down = OpenAIEmbedder(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", api_key=None)
    make: Callable[[], Embedder] = lambda: down  # noqa: E731
    seeded(db, minilm, tenant[0], prompt=QUESTION)
    exact, similar = job(db, tenant[0], prompt=QUESTION), job(db, tenant[0], prompt=PARAPHRASE)
    intake_ingest.ingest(db, job_ids=[exact.id, similar.id], catalog=get_catalog(), embedder=make)
    db.commit()
    db.refresh(exact)
    db.refresh(similar)
    assert exact.state == JobState.completed
    assert similar.state == JobState.waiting  # routed to the provider, not lost
    assert db.get(JobEmbedding, similar.id) is None
