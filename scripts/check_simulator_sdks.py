#!/usr/bin/env python3
"""Check that the official ``openai`` and ``anthropic`` SDKs work unchanged against a server.

Starts nothing: point it at a running ``thrifty simulator`` (or, with real keys, at the real
APIs — it creates small batches and cancels one, which costs a little):

    .venv/bin/thrifty simulator --port 8100 &
    .venv/bin/python scripts/check_simulator_sdks.py \\
        --openai-base-url http://127.0.0.1:8100/v1 --anthropic-base-url http://127.0.0.1:8100

Exits 0 when every check passed, 1 otherwise; prints one line per check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

CHAT_MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"
CLAUDE_MODEL = "claude-3-5-haiku-latest"
QUESTION = "What is the capital of France?"


def _wait(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        item = fetch()
        if done(item):
            return item
        if time.monotonic() > deadline:
            raise TimeoutError(f"still not done after {timeout:.0f} s: {item}")
        time.sleep(0.2)


def openai_checks(
    base_url: str, api_key: str, timeout: float
) -> list[tuple[str, Callable[[], str]]]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=2)

    def chat() -> str:
        reply = client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=50
        )
        text = reply.choices[0].message.content
        assert text
        assert reply.usage
        assert reply.usage.completion_tokens > 0
        return f"{reply.usage.prompt_tokens}+{reply.usage.completion_tokens} tokens: {text[:40]!r}"

    def embeddings() -> str:
        result = client.embeddings.create(model=EMBEDDING_MODEL, input=["first text", "second"])
        vectors = [item.embedding for item in result.data]
        assert len(vectors) == 2
        assert len(vectors[0]) > 0
        norm = sum(x * x for x in vectors[0]) ** 0.5
        assert abs(norm - 1) < 1e-3, norm
        return f"2 vectors of {len(vectors[0])} dimensions"

    def batch() -> str:
        lines = [
            {
                "custom_id": f"check-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": CHAT_MODEL,
                    "messages": [{"role": "user", "content": f"{QUESTION} ({i})"}],
                    "max_tokens": 50,
                },
            }
            for i in range(3)
        ]
        payload = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = client.files.create(file=("check.jsonl", payload), purpose="batch")
        created = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"check": "sdk"},
        )
        ended = _wait(
            lambda: client.batches.retrieve(created.id),
            lambda b: b.status in {"completed", "failed", "expired", "cancelled"},
            timeout,
        )
        assert ended.status == "completed", ended.status
        assert ended.output_file_id
        output = client.files.content(ended.output_file_id).text
        ids = sorted(json.loads(line)["custom_id"] for line in output.splitlines() if line)
        assert ids == ["check-0", "check-1", "check-2"], ids
        return f"{created.id} completed with 3 results"

    def cancel() -> str:
        payload = json.dumps(
            {
                "custom_id": "cancel-0",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": CHAT_MODEL, "messages": [{"role": "user", "content": QUESTION}]},
            }
        ).encode()
        uploaded = client.files.create(file=("cancel.jsonl", payload + b"\n"), purpose="batch")
        created = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        cancelled = client.batches.cancel(created.id)
        assert cancelled.status in {"cancelling", "cancelled"}, cancelled.status
        ended = _wait(
            lambda: client.batches.retrieve(created.id),
            lambda b: b.status in {"cancelled", "completed", "failed", "expired"},
            timeout,
        )
        assert ended.status == "cancelled", ended.status
        return f"{created.id} cancelling -> cancelled"

    return [
        ("openai chat.completions.create", chat),
        ("openai embeddings.create", embeddings),
        ("openai files.create + batches.create/retrieve + files.content", batch),
        ("openai batches.cancel", cancel),
    ]


def anthropic_checks(
    base_url: str, api_key: str, timeout: float
) -> list[tuple[str, Callable[[], str]]]:
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=2)

    def message() -> str:
        reply = client.messages.create(
            model=CLAUDE_MODEL,
            max_tokens=50,
            system="Answer briefly.",
            messages=[{"role": "user", "content": QUESTION}],
        )
        block = reply.content[0]
        assert block.type == "text"
        assert block.text
        assert reply.usage.output_tokens > 0
        assert reply.stop_reason in {"end_turn", "max_tokens"}
        return f"{reply.usage.input_tokens}+{reply.usage.output_tokens} tokens: {block.text[:40]!r}"

    def _create(count: int) -> Any:
        return client.messages.batches.create(
            requests=[
                {
                    "custom_id": f"check-{i}",
                    "params": {
                        "model": CLAUDE_MODEL,
                        "max_tokens": 50,
                        "messages": [{"role": "user", "content": f"{QUESTION} ({i})"}],
                    },
                }
                for i in range(count)
            ]
        )

    def batch() -> str:
        created = _create(3)
        ended = _wait(
            lambda: client.messages.batches.retrieve(created.id),
            lambda b: b.processing_status == "ended",
            timeout,
        )
        assert ended.request_counts.succeeded == 3, ended.request_counts
        results = list(client.messages.batches.results(created.id))
        assert sorted(r.custom_id for r in results) == ["check-0", "check-1", "check-2"]
        assert all(r.result.type == "succeeded" for r in results)
        return f"{created.id} ended with 3 succeeded results"

    def cancel() -> str:
        created = _create(2)
        cancelling = client.messages.batches.cancel(created.id)
        assert cancelling.processing_status in {"canceling", "ended"}
        ended = _wait(
            lambda: client.messages.batches.retrieve(created.id),
            lambda b: b.processing_status == "ended",
            timeout,
        )
        assert ended.cancel_initiated_at is not None
        kinds = {r.result.type for r in client.messages.batches.results(created.id)}
        assert kinds <= {"canceled", "succeeded", "errored"}, kinds
        return f"{created.id} canceling -> ended ({', '.join(sorted(kinds))})"

    return [
        ("anthropic messages.create", message),
        ("anthropic messages.batches.create/retrieve/results", batch),
        ("anthropic messages.batches.cancel", cancel),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openai-base-url", help="e.g. http://127.0.0.1:8100/v1")
    parser.add_argument("--anthropic-base-url", help="e.g. http://127.0.0.1:8100")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait per batch")
    args = parser.parse_args(argv)
    if not args.openai_base_url and not args.anthropic_base_url:
        parser.error("give --openai-base-url and/or --anthropic-base-url")
    checks: list[tuple[str, Callable[[], str]]] = []
    if args.openai_base_url:
        key = os.environ.get("OPENAI_API_KEY", "sk-simulator")
        checks += openai_checks(args.openai_base_url, key, args.timeout)
    if args.anthropic_base_url:
        key = os.environ.get("ANTHROPIC_API_KEY", "sk-ant-simulator")
        checks += anthropic_checks(args.anthropic_base_url, key, args.timeout)
    failed = 0
    for name, check in checks:
        try:
            print(f"ok    {name}: {check()}", flush=True)
        except Exception as exc:  # report every check, then fail
            failed += 1
            print(f"FAIL  {name}: {type(exc).__name__}: {exc}", flush=True)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
