"""The main job: 200 shipped documents summarised as one bulk submission."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import httpx

from app.stack.embedded import StackInfo


def load_documents(limit: int) -> list[dict[str, str]]:
    """The sample documents that ship with Thrifty (CC0; see app/demo/data/README.md)."""
    text = resources.files("app.demo").joinpath("data/documents.jsonl").read_text("utf-8")
    docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    return docs[:limit]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The submitted group's progress at one poll."""

    elapsed: float
    total: int
    completed: int
    queued: int
    waiting: int
    in_batch: int
    failed: int
    done: bool

    def counts(self) -> str:
        return (
            f"completed {self.completed:>4}/{self.total}  queued {self.queued}"
            f"  waiting {self.waiting}  in batch {self.in_batch}  failed {self.failed}"
        )


def _usd(value: Any) -> str:
    return f"${Decimal(str(value)):.4f}"


def run(
    info: StackInfo,
    *,
    count: int,
    say: Callable[[str], None],
    progress: Callable[[Snapshot], None] | None = None,
    timeout: float = 600,
) -> bool:
    """Submit the documents, show progress, print summaries and the cost report.

    ``progress`` is called at every poll (the CLI's progress bar); without it each change is
    a line through ``say``.
    """
    docs = load_documents(count)
    headers = {"Authorization": f"Bearer {info.api_key}"}
    jobs = [
        {
            "document": doc["text"],
            "instruction": "summarise",
            "metadata": {"title": doc["title"], "doc_id": doc["id"]},
            "idempotency_key": f"demo-{doc['id']}-{time.time_ns()}",
        }
        for doc in docs
    ]
    with httpx.Client(base_url=info.api_url, headers=headers, timeout=60) as client:
        started = time.monotonic()
        submitted_at = datetime.now(UTC) - timedelta(seconds=1)
        response = client.post("/v1/jobs", json=jobs)
        response.raise_for_status()
        group_id = response.json()["group_id"]
        say(f"\nsubmitted {len(jobs)} documents as group {group_id} (HTTP {response.status_code})")

        group: dict[str, Any] = {}
        last = ""
        while time.monotonic() - started < timeout:
            group = client.get(f"/v1/groups/{group_id}").json()
            counts = group["counts"]
            snapshot = Snapshot(
                elapsed=time.monotonic() - started,
                total=len(jobs),
                completed=counts["completed"],
                queued=counts["queued"],
                waiting=counts["waiting"],
                in_batch=counts["batched"] + counts["submitted"],
                failed=counts["failed"],
                done=group["done"],
            )
            if progress is not None:
                progress(snapshot)
            elif snapshot.counts() != last:
                last = snapshot.counts()
                say(f"  {snapshot.elapsed:5.1f}s  {last}")
            if group["done"]:
                break
            time.sleep(1.0)
        else:
            say(f"gave up after {timeout:.0f}s; the jobs carry on in the background")
            return False

        page = client.get(f"/v1/groups/{group_id}/jobs", params={"limit": 3}).json()
        say("\nA few summaries:")
        for job in page["data"]:
            say(f"\n  # {job['metadata']['title']}  [{job['model']}, {job['route_reason']}]")
            say(f"    {job['result'] or job['error']}")

        usage, cost = group["usage"], group["cost"]
        naive, actual = Decimal(str(cost["naive_cost_usd"])), Decimal(str(cost["cost_usd"]))
        saved = (1 - actual / naive) * 100 if naive else Decimal(0)
        say("\nCost summary")
        say(f"  jobs              {group['size']} ({group['counts']['completed']} completed,"
            f" {group['counts']['failed']} failed, {group['cache_hits']} from cache)")  # fmt: skip
        say(f"  input tokens      {usage['input_tokens']:,}")
        say(f"  output tokens     {usage['output_tokens']:,}")
        say(f"  cost              {_usd(actual)}  (routed model, provider batch price)")
        say(f"  naive cost        {_usd(naive)}  (every request realtime to the naive model)")
        say(f"  saved             {_usd(naive - actual)}  ({saved:.1f}%)")
        say(f"  wall time         {time.monotonic() - started:.1f}s")
        _ledger_summary(client, since=submitted_at, say=say)
        return bool(group["counts"]["completed"] == len(jobs))


def _ledger_summary(client: httpx.Client, *, since: datetime, say: Callable[[str], None]) -> None:
    """Savings by layer and latency percentiles of the run, from ``GET /v1/stats``."""
    response = client.get("/v1/stats", params={"since": since.isoformat()})
    if response.status_code != 200:
        say(f"\n(stats unavailable: HTTP {response.status_code})")
        return
    stats = response.json()
    say("\nSavings by layer (GET /v1/stats)")
    for layer in ("cache", "coalescing", "routing", "batching", "prompt_cache"):
        say(f"  {layer.replace('_', ' '):<17} {_usd(stats['savings_usd'][layer])}")
    say(f"  {'all layers':<17} {_usd(stats['saved_usd'])}")
    lpr = stats["lpr_seconds"]
    # Percentiles are read from histogram buckets: one can exceed the wall time a little.
    say("\nLatency per request (submission to result; from buckets, within ~13 %)")
    shown = [f"{q} {lpr[q]:.1f}s" for q in ("p50", "p95", "p99") if lpr[q] is not None]
    say("  " + "   ".join(shown))
