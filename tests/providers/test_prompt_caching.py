"""Provider prompt caching: shared prefixes sent first and marked, the simulator's cached
tokens, their prices, and one in-process pipeline through Anthropic's Message Batches."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.batching import collector, submitter
from app.catalog.catalog import Catalog, get_catalog
from app.jobs.repository import BatchJob
from app.ledger import service as ledger_service
from app.ledger.pricing import TokenUsage, chain
from app.models import BatchState, Job, JobMode, JobState, utcnow
from app.providers import anthropic_format, openai_format
from app.providers.anthropic_batch import AnthropicBatchProvider
from app.simulator.anthropic import create_message
from app.simulator.chat import completion_object
from app.simulator.prompt_cache import PROMPT_CACHE
from tests.batching.test_submit_and_poll import poll_until_ended
from tests.intake.test_coalescing import run_ingest

# About 1,500 tokens by both counts (the estimate's four characters a token, the simulator's
# words): over OpenAI's and Claude Sonnet's 1,024, under Claude Haiku 4.5's 4,096.
LONG = " ".join(f"Rule {n}: quote every figure with its unit and its source." for n in range(150))
SONNET, HAIKU = "claude-sonnet-4-5", "claude-haiku-4-5"


def job(document: str, *, system: str | None = LONG, instruction: str | None = None) -> BatchJob:
    return BatchJob(uuid.uuid4(), None, document, instruction, system, 64, None, None)


def test_jobs_sharing_a_prefix_are_sent_together_with_it_first_and_marked() -> None:
    a1, b1, a2, lone, short = (
        job("Article one."),
        job("Article two.", system="Be brief."),
        job("Article three."),
        job("Article four.", system=LONG + " Also be kind."),
        job("Article five.", system="Be brief."),
    )
    requests = submitter._requests([a1, b1, a2, lone, short], min_cache_tokens=1024)
    # The two sharing LONG are next to each other, in the place of the first of them.
    assert [r.custom_id for r in requests] == [str(j.id) for j in (a1, a2, b1, short, lone)]
    first, second, brief, brief2, alone = requests
    assert first.prefix is not None
    assert first.prefix == second.prefix
    # Shared but short, or long but not shared: nothing is marked.
    assert brief.prefix is brief2.prefix is alone.prefix is None
    # A model without prompt caching gets no marks at all.
    unmarked = submitter._requests([a1, a2], min_cache_tokens=None)
    assert [r.prefix for r in unmarked] == [None, None]
    # Too short for Claude Haiku 4.5's 4,096 tokens.
    assert submitter._requests([a1, a2], min_cache_tokens=4096)[0].prefix is None

    # OpenAI: the key only on the shared prefix, and both bodies open with the same bytes up
    # to the document.
    one, two, plain = (openai_format.chat_body("gpt-4o-mini", r) for r in (first, second, brief))
    assert one["prompt_cache_key"] == two["prompt_cache_key"] == first.prefix.key
    assert "prompt_cache_key" not in plain
    head = orjson.dumps(one["messages"]).split(b"Article")[0]
    assert orjson.dumps(two["messages"]).startswith(head)
    assert LONG.encode() in head
    assert head.endswith(b"two or three sentences.\\n\\n")

    # Anthropic: one 1-hour breakpoint, on the instruction block after the system prompt.
    params = anthropic_format.message_params(model=SONNET, request=first)
    other = anthropic_format.message_params(model=SONNET, request=second)
    assert params["system"] == other["system"] == LONG
    content, other_content = params["messages"][0]["content"], other["messages"][0]["content"]
    assert isinstance(content, list)
    assert isinstance(other_content, list)
    assert (
        content[0]
        == other_content[0]
        == {
            "type": "text",
            "text": "Summarise the following document in two or three sentences.\n\n",
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    )
    assert content[1] == {"type": "text", "text": "Article one."}
    assert (
        "cache_control"
        not in anthropic_format.encode(
            anthropic_format.batch_entry(SONNET, brief, default_max_tokens=64, tag="t")
        ).decode()
    )
    # A prompt job's prefix is its system prompt: the breakpoint goes there.
    prompts = [
        BatchJob(uuid.uuid4(), f"Question {n}?", None, None, LONG, 64, None, None) for n in (1, 2)
    ]
    marked = submitter._requests(prompts, min_cache_tokens=1024)[0]
    system = anthropic_format.message_params(model=SONNET, request=marked)["system"]
    assert system == [
        {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]


def test_the_simulator_reports_a_recent_long_prefix_as_cached_tokens() -> None:
    PROMPT_CACHE.clear()
    key = f"k-{uuid.uuid4()}"

    def openai(text: str, cache_key: str | None = key) -> int:
        messages = [{"role": "system", "content": LONG}, {"role": "user", "content": text}]
        usage = completion_object("c", 0, "gpt-4o-mini", messages, 64, prompt_cache_key=cache_key)
        return usage["usage"]["prompt_tokens_details"]["cached_tokens"]

    assert openai("First article.") == 0
    cached = openai("Second article.")
    assert cached >= 1024
    assert cached % 128 == 0
    assert openai("Third article.", cache_key="another key") == 0  # another route
    short = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."}]
    for _ in range(2):
        body = completion_object("c", 0, "gpt-4o-mini", short, 64, prompt_cache_key=key)
        assert body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0

    def claude(model: str, text: str) -> dict[str, int]:
        params = {
            "model": model,
            "max_tokens": 64,
            "system": [
                {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
            "messages": [{"role": "user", "content": text}],
        }
        usage = dict(create_message(params)["usage"])
        return {k: v for k, v in usage.items() if isinstance(v, int)}

    written, read = claude(SONNET, "First article."), claude(SONNET, "Second article.")
    assert written["cache_creation_input_tokens"] > 1024
    assert written["cache_read_input_tokens"] == 0
    assert read["cache_read_input_tokens"] == written["cache_creation_input_tokens"]
    assert read["cache_creation_input_tokens"] == 0
    assert 0 < read["input_tokens"] < 20  # what follows the breakpoint
    # Under Claude Haiku 4.5's minimum: nothing cached, every token plain input.
    for _ in range(2):
        haiku = claude(HAIKU, "Third article.")
        assert haiku["cache_creation_input_tokens"] == haiku["cache_read_input_tokens"] == 0


def test_cached_reads_and_one_hour_writes_are_priced_as_anthropic_and_openai_price_them() -> None:
    catalog = get_catalog()
    sonnet = catalog.model(SONNET)
    # 1-hour writes 2x the input price, reads 0.1x (claude-sonnet-4-5: $3 input).
    assert (sonnet.cache_write_per_mtok, sonnet.cached_input_per_mtok) == (
        Decimal("6.00"),
        Decimal("0.30"),
    )
    assert (sonnet.min_cache_tokens, catalog.model(HAIKU).min_cache_tokens) == (1024, 4096)
    line = orjson.dumps(
        {
            "custom_id": "j",
            "result": {
                "type": "succeeded",
                "message": {
                    "content": [{"type": "text", "text": "ok"}],
                    "usage": {
                        "input_tokens": 20,
                        "output_tokens": 100,
                        "cache_read_input_tokens": 3000,
                        "cache_creation_input_tokens": 1000,
                    },
                },
            },
        }
    ).decode()
    result = anthropic_format.parse_result_line(line)
    usage = TokenUsage(
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cached_input_tokens=result.cached_input_tokens,
        cache_write_tokens=result.cache_write_tokens,
    )
    assert usage == TokenUsage(4020, 100, 3000, 1000)
    costs = chain(catalog, model=SONNET, mode=JobMode.batch, usage=usage)
    # (20·3.00 + 3000·0.30 + 1000·6.00 + 100·15.00) / 1e6, halved: the discounts stack.
    assert costs.actual == Decimal("0.004230000000")
    assert costs.batched == Decimal("0.006780000000")  # (4020·3 + 100·15) / 1e6 / 2
    assert costs.savings.prompt_cache == Decimal("0.002550000000")
    assert costs.savings.total == costs.naive - costs.actual
    # OpenAI: cached tokens are part of prompt_tokens, at the cached-input price (no writes).
    body = {
        "choices": [{"message": {"content": "ok"}}],
        "usage": {
            "prompt_tokens": 2000,
            "completion_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 1536},
        },
    }
    got = openai_format.completion_result("j", body)  # type: ignore[arg-type]
    mini = chain(
        catalog,
        model="gpt-4o-mini",
        mode=JobMode.realtime,
        usage=TokenUsage(got.input_tokens, got.output_tokens, got.cached_input_tokens),
    )
    # (464·0.15 + 1536·0.075 + 10·0.60) / 1e6
    assert mini.actual == Decimal("0.000190800000")
    assert mini.savings.prompt_cache == Decimal("0.000115200000")


def test_a_shared_system_prompt_fills_the_prompt_cache_layer_through_message_batches(
    db: Session, api: TestClient, simulator: str
) -> None:
    PROMPT_CACHE.clear()
    documents = [
        f"Article {n}: the harbour of Millbrook reopened after {n} weeks." for n in range(4)
    ]
    body = [{"document": d, "system": LONG, "model": SONNET} for d in documents]
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    ids = [uuid.UUID(j["id"]) for j in response.json()["jobs"]]
    run_ingest(db, ids)
    db.execute(update(Job).where(Job.id.in_(ids)).values(routed_at=utcnow() - timedelta(seconds=5)))
    db.commit()
    catalog: Catalog = get_catalog()
    (batch_id,) = collector.collect(db, catalog=catalog)
    db.commit()
    provider = AnthropicBatchProvider(
        base_url=simulator.removesuffix("/v1"), api_key="test", timeout=5.0
    )
    try:
        assert submitter.submit(db, batch_id=batch_id, provider=provider, catalog=catalog)
        db.commit()
        assert poll_until_ended(db, batch_id, provider, catalog) == BatchState.completed
    finally:
        provider.close()

    db.expire_all()
    rows = list(db.scalars(select(Job).where(Job.id.in_(ids))))
    assert {r.state for r in rows} == {JobState.completed}
    # One request wrote the prefix to the cache, the others read it.
    assert sorted(bool(r.cache_write_tokens) for r in rows) == [False, False, False, True]
    assert sum(bool(r.cached_input_tokens) for r in rows) == 3
    savings = ledger_service.savings_of(db, job_ids=ids)
    readers = [r for r in rows if r.cached_input_tokens]
    assert all(savings[r.id].prompt_cache > 0 for r in readers)
    assert sum(savings[r.id].prompt_cache for r in rows) > 0
    for r in rows:
        assert savings[r.id].total == (r.naive_cost_usd or 0) - (r.cost_usd or 0)
    stats = api.get("/v1/stats").json()
    layers = stats["savings_usd"]
    assert Decimal(layers["prompt_cache"]) == sum(savings[r.id].prompt_cache for r in rows)
    assert sum(Decimal(v) for k, v in layers.items() if k != "total") == Decimal(stats["saved_usd"])
