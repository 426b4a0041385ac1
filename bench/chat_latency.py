"""Chat completions through the front door, against a running stack: a miss, then hits.

    thrifty up --detach
    python -m bench.chat_latency [--api-url http://127.0.0.1:8000] [--key-file .thrifty/dev-api-key]

With the official ``openai`` SDK, as a user's code calls Thrifty: ``--questions`` distinct
questions, each asked once (a cache miss: routed, answered in realtime by the provider or the
simulator) and then ``--repeats`` times (exact cache hits: answered by the ingest worker from
the cache, then read back by the API). Ends with ``key=value`` lines; the same-run baseline
is the miss.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parent.parent


def _timed(client: openai.OpenAI, question: str) -> tuple[float, str]:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": question}
    ]
    began = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
    return time.perf_counter() - began, raw.headers["x-thrifty-cache"]


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(0.95 * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api-url", default="http://127.0.0.1:8000")
    parser.add_argument("--key-file", default=str(ROOT / ".thrifty" / "dev-api-key"))
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    key = Path(args.key_file).read_text().strip()
    client = openai.OpenAI(base_url=f"{args.api_url}/v1", api_key=key, max_retries=0)
    misses: list[float] = []
    hits: list[float] = []
    wrong = 0
    for _ in range(args.questions):
        question = f"What does a load balancer do? ({uuid.uuid4().hex[:8]})"
        seconds, outcome = _timed(client, question)
        misses.append(seconds)
        wrong += outcome != "miss"
        for _ in range(args.repeats):
            seconds, outcome = _timed(client, question)
            hits.append(seconds)
            wrong += outcome != "hit"
    print(f"requests={len(misses) + len(hits)}")
    print(f"miss_median_ms={statistics.median(misses) * 1000:.1f}")
    print(f"hit_median_ms={statistics.median(hits) * 1000:.1f}")
    print(f"hit_p95_ms={_p95(hits) * 1000:.1f}")
    print(f"hit_max_ms={max(hits) * 1000:.1f}")
    print(f"hit_to_miss_ratio={statistics.median(hits) / statistics.median(misses):.3f}")
    print(f"unexpected_cache_outcomes={wrong}")
    return 0 if wrong == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
