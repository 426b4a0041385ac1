"""A batch's answers are made in a thread once it is in progress (``Store._prepare``): the
output a client reads is the one made at the look, line for line but for the random ids."""

from __future__ import annotations

import json

import orjson

from app.simulator.common import SimulatorSettings
from app.simulator.openai_batches import Store
from app.simulator.openai_lines import CreateBatchRequest

DOCUMENT = (
    "The council approved a budget of 4.2 million pounds on Tuesday. Critics said the plan "
    "cut library hours. The mayor said savings were needed after a difficult year. Residents "
    "will vote on the proposals in May, when 12 seats are contested."
)


def _lines(count: int) -> bytes:
    rows = [
        {
            "custom_id": f"job-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Summarise the document."},
                    {"role": "user", "content": f"Report {i}\n\n{DOCUMENT}"},
                ],
                "max_tokens": 60 if i % 2 else 300,
            },
        }
        for i in range(count)
    ]
    return ("\n".join(json.dumps(row) for row in rows) + "\n").encode()


def _answers(store: Store, batch_id: str) -> dict[str, object]:
    status = store.get_batch(batch_id)
    assert status["status"] == "completed"
    assert status["output_file_id"] is not None
    data = store.get_file(status["output_file_id"]).data.decode()
    found: dict[str, object] = {}
    for raw in data.splitlines():
        line = orjson.loads(raw)
        body = line["response"]["body"]
        found[line["custom_id"]] = (body["choices"][0], body["usage"], body["created"])
    return found


def _batch(store: Store, count: int) -> str:
    upload = store.add_file("in.jsonl", "batch", _lines(count))
    request = CreateBatchRequest(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return store.create_batch(request).id


def test_answers_made_ahead_are_the_answers_made_at_the_look() -> None:
    settings = SimulatorSettings(validating_seconds=0, processing_seconds=0)
    ahead = Store(settings)
    made_ahead = _batch(ahead, 40)
    prepared = ahead.batches[made_ahead].prepared
    assert prepared is not None
    assert prepared.done.wait(10)  # made in its thread before anyone looked
    lazy = Store(settings)
    made_at_look = _batch(lazy, 40)
    lazy.batches[made_at_look].prepared = None  # as before: made at the first look
    assert _answers(ahead, made_ahead) == _answers(lazy, made_at_look)
    assert ahead.batches[made_ahead].prepared is None  # nothing kept once stored


def test_a_look_while_the_answers_are_being_made_waits_for_them() -> None:
    store = Store(SimulatorSettings(validating_seconds=0, processing_seconds=0))
    batch_id = _batch(store, 200)
    assert len(_answers(store, batch_id)) == 200  # right away: waited, every line there


def test_a_batch_cancelled_while_validating_is_not_answered_ahead() -> None:
    store = Store(SimulatorSettings(validating_seconds=0.2, processing_seconds=0.5))
    batch_id = _batch(store, 5)
    store.cancel_batch(batch_id)
    prepared = store.batches[batch_id].prepared
    assert prepared is not None
    assert prepared.done.wait(10)
    assert prepared.lines == []
    assert prepared.errors == []
