"""The cost chain: exact decimals, savings by layer that add up to naive minus actual."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.catalog.catalog import Catalog, get_catalog
from app.ledger import histogram
from app.ledger.pricing import AnsweredBy, TokenUsage, chain, paid_price
from app.models import JobMode
from app.providers import anthropic_format, openai_format


@pytest.fixture
def catalog() -> Catalog:
    return get_catalog()


def test_a_batched_job_saves_by_routing_and_batching(catalog: Catalog) -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=200)
    costs = chain(catalog, model="gpt-4o-mini", mode=JobMode.batch, usage=usage)
    # gpt-4o: 2.50 / 10.00 per Mtok; gpt-4o-mini: 0.15 / 0.60, half price in a batch.
    assert costs.naive == Decimal("0.004500000000")
    assert costs.routed == Decimal("0.000270000000")
    assert costs.batched == costs.prompt_cached == costs.actual == Decimal("0.000135000000")
    savings = costs.savings
    assert savings.routing == Decimal("0.004230000000")
    assert savings.batching == Decimal("0.000135000000")
    assert savings.cache == savings.coalescing == savings.prompt_cache == 0
    assert savings.total == costs.naive - costs.actual


def test_a_realtime_job_saves_nothing_by_batching(catalog: Catalog) -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=200)
    costs = chain(catalog, model="gpt-4o-mini", mode=JobMode.realtime, usage=usage)
    assert costs.actual == costs.routed == Decimal("0.000270000000")
    assert costs.savings.batching == 0


def test_a_cache_hit_records_its_routed_batched_cost_as_the_cache_saving(
    catalog: Catalog,
) -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=200)
    costs = chain(
        catalog,
        model="gpt-4o-mini",
        mode=JobMode.batch,
        usage=usage,
        answered_by=AnsweredBy.cache_exact,
    )
    assert costs.actual == 0
    # The cache saved what the job would have cost routed and batched, not the naive price.
    assert costs.savings.cache == Decimal("0.000135000000")
    assert costs.savings.routing == Decimal("0.004230000000")
    assert costs.savings.total == costs.naive


def test_prompt_cache_prices_cached_reads_and_writes(catalog: Catalog) -> None:
    base = catalog.model("claude-3-5-haiku-latest").model_copy(
        update={"cached_input_per_mtok": None, "cache_write_per_mtok": None}
    )
    model = base.model_copy(
        update={"cached_input_per_mtok": Decimal("0.08"), "cache_write_per_mtok": Decimal("1.00")}
    )
    cached = catalog.model_copy(
        update={"models": [model if m.name == base.name else m for m in catalog.models]}
    )
    usage = TokenUsage(
        input_tokens=10_000, output_tokens=100, cached_input_tokens=8000, cache_write_tokens=1000
    )
    costs = chain(cached, model=model.name, mode=JobMode.batch, usage=usage)
    # (1000·0.80 + 8000·0.08 + 1000·1.00 + 100·4.00) / 1e6, halved by the batch discount.
    assert costs.actual == Decimal("0.001420000000")
    assert costs.batched == Decimal("0.004200000000")
    assert costs.savings.prompt_cache == Decimal("0.002780000000")
    assert costs.savings.total == costs.naive - costs.actual
    # A model without cache prices charges cached tokens as plain input.
    assert paid_price(base, JobMode.batch, usage) == costs.batched


def test_savings_add_up_exactly_over_many_jobs(catalog: Catalog) -> None:
    chains = [
        chain(
            catalog,
            model=model,
            mode=mode,
            usage=TokenUsage(input_tokens=7 * i + 3, output_tokens=3 * i + 1),
            answered_by=AnsweredBy.cache_semantic if i % 3 == 0 else AnsweredBy.provider,
        )
        for i in range(300)
        for model in ("gpt-4o-mini", "gpt-4.1-mini", "claude-3-5-haiku-latest")
        for mode in (JobMode.batch, JobMode.realtime)
    ]
    naive = sum((c.naive for c in chains), Decimal(0))
    actual = sum((c.actual for c in chains), Decimal(0))
    saved = sum((c.savings.total for c in chains), Decimal(0))
    assert saved == naive - actual


def test_usage_reports_prompt_cache_tokens() -> None:
    line = {
        "custom_id": "a",
        "response": {
            "status_code": 200,
            "body": {
                "choices": [{"message": {"content": "hi"}}],
                "usage": {
                    "prompt_tokens": 2000,
                    "completion_tokens": 10,
                    "prompt_tokens_details": {"cached_tokens": 1536},
                },
            },
        },
    }
    result = openai_format.parse_result_line(json.dumps(line))
    assert (result.input_tokens, result.cached_input_tokens) == (2000, 1536)
    message = {
        "content": [{"type": "text", "text": "hi"}],
        "usage": {
            "input_tokens": 50,
            "output_tokens": 10,
            "cache_read_input_tokens": 1800,
            "cache_creation_input_tokens": 200,
        },
    }
    line2 = {"custom_id": "b", "result": {"type": "succeeded", "message": message}}
    result = anthropic_format.parse_result_line(json.dumps(line2))
    assert result.input_tokens == 2050
    assert (result.cached_input_tokens, result.cache_write_tokens) == (1800, 200)


def test_histogram_percentiles_stay_within_a_bucket() -> None:
    latencies = [0.5 + i * 0.37 for i in range(1000)]
    counts = [0] * histogram.BUCKETS
    for value in latencies:
        counts[histogram.bucket(value)] += 1
    exact = sorted(latencies)
    qs = (0.5, 0.95, 0.99)
    for q, estimate in zip(qs, histogram.percentiles(counts, qs), strict=True):
        true = exact[int(q * len(exact)) - 1]
        assert estimate is not None
        assert abs(estimate - true) / true < histogram.GROWTH - 1
    assert histogram.percentiles([0] * histogram.BUCKETS, qs) == [None, None, None]
    # Sparse: empty buckets between and after the jobs, one job at the very top.
    sparse = [0] * histogram.BUCKETS
    sparse[3], sparse[40], sparse[-1] = 98, 1, 1
    p50, p99, top = histogram.percentiles(sparse, (0.5, 0.99, 1.0))
    assert p50 is not None
    assert histogram.BOUNDS[2] <= p50 <= histogram.BOUNDS[3]
    assert p99 is not None
    assert histogram.BOUNDS[39] <= p99 <= histogram.BOUNDS[40]
    assert top is not None
    assert top >= histogram.BOUNDS[-1]


def _one_at_a_time(counts: list[int], qs: tuple[float, ...]) -> list[float | None]:
    """The percentiles as the stats answer read them before numpy: one histogram at a time."""
    import math
    from bisect import bisect_left
    from itertools import accumulate

    cumulative = list(accumulate(counts))
    if not cumulative[-1]:
        return [None] * len(qs)
    found: list[float | None] = []
    for q in qs:
        rank = max(1.0, math.ceil(q * cumulative[-1]))
        index = bisect_left(cumulative, rank)
        seen = cumulative[index - 1] if index > 0 else 0
        low = histogram.BOUNDS[index - 1] if index > 0 else histogram.FIRST / histogram.GROWTH
        high = (histogram.BOUNDS[index] if index < len(histogram.BOUNDS)
                else histogram.BOUNDS[-1] * histogram.GROWTH)  # fmt: skip
        found.append(round(float(low * (high / low) ** ((rank - seen) / counts[index])), 4))
    return found


def test_percentiles_of_many_histograms_are_each_one_s_own() -> None:
    """numpy finds the buckets of thousands of histograms at once; every value is the one a
    histogram read alone gives, to the last digit (empty, sparse, huge and full ones)."""
    import random

    import numpy as np

    dice = random.Random(7)
    rows = []
    for _ in range(3000):
        counts = [0] * histogram.BUCKETS
        if dice.random() < 0.2:
            counts = [dice.randint(0, 10**6) for _ in counts]
        else:
            for _ in range(dice.randint(0, 4)):
                counts[dice.randrange(histogram.BUCKETS)] += dice.choice([1, 2, 7, 123456789])
        rows.append(counts)
    qs = (0.5, 0.95, 0.99, 1.0, 0.0001)
    many = histogram.percentiles_of(np.array(rows, dtype=np.int64), qs)
    assert many == [_one_at_a_time(counts, qs) for counts in rows]
