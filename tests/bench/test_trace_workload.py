"""The trace benchmark's workload is what its figures assume (no stack: builds it and reads it)."""

from __future__ import annotations

import pytest

from app.cache.verify import same_document
from app.simulator.summarise import count_tokens
from bench.stack import DATA
from bench.trace import OPENAI_MIN_PREFIX
from bench.trace_workload import build

pytestmark = pytest.mark.skipif(
    not (DATA / "docs").exists() or not (DATA / "routing").exists(), reason="no ../shared/data"
)


def test_every_kind_is_what_its_class_says() -> None:
    submissions = build(400, seed=3, data=DATA)
    items = [item for batch in submissions for item in batch]
    assert len(items) == 400
    by_index = {item.index: item for item in items}
    kinds = {item.kind for item in items}
    assert kinds >= {"article", "resubmission", "duplicate", "syndicated", "same_topic",
                     "changed_numbers", "question", "question_repeat"}  # fmt: skip
    for item in items:
        if item.kind in {"article", "question"}:
            assert item.source is None
            continue
        source = by_index[item.source] if item.source is not None else None
        assert source is not None
        if item.kind in {"resubmission", "duplicate", "question_repeat"}:
            assert source.job == item.job
            assert source.cls == item.cls
        if item.kind == "duplicate":
            assert source.submission == item.submission
        if item.kind == "syndicated":
            assert source.cls == item.cls
            assert same_document(source.job["document"], item.job["document"]).same
        if item.kind == "changed_numbers":
            assert source.cls != item.cls
            check = same_document(source.job["document"], item.job["document"])
            assert check.failed == "numbers"
        if item.kind == "same_topic":
            assert source.cls != item.cls
            assert source.meta["topic"] == item.meta["topic"]
        # The shared prefixes are long enough for OpenAI's prompt cache.
        assert count_tokens(item.job["system"]) >= OPENAI_MIN_PREFIX
    assert build(400, seed=3, data=DATA)[0][0].job == submissions[0][0].job  # seeded
