"""Jobs sent as chat ``messages``: stored as system prompt, history and last user message,
sent to the provider whole, and cached under a scope that holds the whole conversation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cache.keys import cache_key, scope_key
from app.jobs.schemas import JobIn
from app.kit.prompts import build_messages
from app.models import Job
from tests.jobs.test_submit import assert_error

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "7"},
    {"role": "user", "content": "Another one?"},
]


def test_a_conversation_is_stored_in_parts_and_sent_whole(api: TestClient, db: Session) -> None:
    response = api.post("/v1/jobs", json={"messages": CONVERSATION})
    assert response.status_code == 202, response.text
    job = db.scalars(select(Job)).one()
    assert job.system == "You are terse."
    assert job.prompt == "Another one?"
    assert job.history == CONVERSATION[1:3]
    assert build_messages(job) == CONVERSATION


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"messages": CONVERSATION[:3]}, "last of `messages` must be a `user`"),
        ({"messages": [*CONVERSATION[1:3], CONVERSATION[0], CONVERSATION[3]]}, "must come before"),
        ({"messages": CONVERSATION, "prompt": "x"}, "replaces `prompt`"),
        ({"messages": CONVERSATION, "system": "x"}, "replaces `prompt`"),
        ({"messages": []}, "at least 1"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": "  "}]}, "must not be blank"),
    ],
)
def test_a_malformed_conversation_is_refused_with_the_reason(
    api: TestClient, body: dict[str, object], reason: str
) -> None:
    assert reason in assert_error(api.post("/v1/jobs", json=body), 422)


def test_the_whole_conversation_is_the_cache_scope() -> None:
    def job(*history: str) -> JobIn:
        turns = [
            {"role": r, "content": c}
            for r, c in zip(["user", "assistant"] * 3, history, strict=False)
        ]
        return JobIn.model_validate(
            {"messages": [*turns, {"role": "user", "content": "Another one?"}]}
        )

    first, second, same = (
        job("Name a prime.", "7"),
        job("Name a square.", "4"),
        job("Name  a prime.", "7"),
    )
    assert cache_key(first, tier="economy") != cache_key(second, tier="economy")
    assert scope_key(first, tier="economy") != scope_key(second, tier="economy")
    # Whitespace is normalised as in any other cached text.
    assert cache_key(first, tier="economy") == cache_key(same, tier="economy")
    # A single user message is the same request as a prompt: the same key as before.
    single, prompt = job(), JobIn(prompt="Another one?")
    assert cache_key(single, tier="economy") == cache_key(prompt, tier="economy")
    assert scope_key(single, tier="economy") == scope_key(prompt, tier="economy")
