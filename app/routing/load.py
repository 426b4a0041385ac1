"""Provider load: a model whose Batch API queue is full, or a server with all its concurrent
requests taken, spills work to its fallback chain.

OpenAI limits the input tokens enqueued in batches per model (``enqueued_token_limit`` in the
catalog; the figure depends on the account's usage tier, so the shipped catalog sets none): a
batch that would pass it is refused. The router counts a model's enqueued tokens (intake asks
``app/jobs/load.py``: its unfinished batch-mode jobs' estimated input tokens) and sends a job
that would pass the limit to the first model of the chain with room instead of failing.

A self-hosted or realtime server takes so many requests at once (``max_concurrent_requests``
in the catalog). The router counts a model's realtime and flex jobs in flight (routed and not
ended: waiting in a realtime window, batched, being called; ``app/jobs/load.py``) and sends
a realtime or flex job of a saturated model to the first model of its chain with a free
slot (or no known limit); the submitter never calls the model with more than its limit at
once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from app.catalog.catalog import Catalog
from app.models import JobMode
from app.routing.service import Route


def limited_models(catalog: Catalog) -> list[str]:
    """The models with a known queue limit (the only ones whose load is read)."""
    return [m.name for m in catalog.models if m.enqueued_token_limit is not None]


def spill_over(
    catalog: Catalog,
    route: Route,
    *,
    tokens: int,
    enqueued: Mapping[str, int],
    open_providers: frozenset[str],
) -> Route:
    """``route``, or when its model's batch queue cannot take ``tokens`` more, the first
    model of its chain whose queue can (or has no known limit), on a provider whose circuit is
    closed, that holds the input. A pinned model stays, and so does a job whose chain has no
    such model (it waits in its window for its batch)."""
    model = catalog.model(route.model)
    limit = model.enqueued_token_limit
    used = enqueued.get(model.name, 0)
    if limit is None or used + tokens <= limit or route.details.get("hint") == "model":
        return route
    for step in catalog.fallback_chain(model.name):
        room = step.enqueued_token_limit
        if step.provider in open_providers or step.context_tokens < tokens:
            continue
        if room is not None and enqueued.get(step.name, 0) + tokens > room:
            continue
        why = (
            f"{model.name}'s batch queue is full ({used:,} of {limit:,} enqueued tokens; "
            f"this job {tokens:,} more)"
        )
        details = {**route.details, "fallback": f"{why}: {model.name} to {step.name}",
                   "fallback_code": "queue_full"}  # fmt: skip
        reason = f"{route.reason}; {why}, next in {model.name}'s chain"
        return Route(step.provider, step.name, reason, details)
    return route


def concurrency_limited(catalog: Catalog) -> list[str]:
    """The models with a known concurrency limit (the only ones whose requests are counted)."""
    return [m.name for m in catalog.models if m.max_concurrent_requests is not None]


def spill_busy(
    catalog: Catalog,
    route: Route,
    *,
    mode: JobMode,
    why: str,
    tokens: int,
    busy: Mapping[str, int],
    open_providers: frozenset[str],
    choose: Callable[[str], tuple[JobMode, str]],
) -> tuple[Route, JobMode, str]:
    """``route`` with its ``mode``, or when its model already has ``max_concurrent_requests``
    realtime/flex requests in flight, the first model of its chain (its mode from ``choose``)
    with a free slot, no known limit or a batch mode, on a closed circuit, that holds the
    input. A pinned model stays, and so does a job whose chain has no such model (it waits
    in its window for a slot)."""
    model = catalog.model(route.model)
    cap = model.max_concurrent_requests
    used = busy.get(model.name, 0)
    if cap is None or used < cap or route.details.get("hint") == "model":
        return route, mode, why
    for step in catalog.fallback_chain(model.name):
        if step.provider in open_providers or step.context_tokens < tokens:
            continue
        step_mode, step_why = choose(step.name)
        room = step.max_concurrent_requests
        if step_mode != JobMode.batch and room is not None and busy.get(step.name, 0) >= room:
            continue
        full = f"{model.name} is saturated ({used} of {cap} concurrent requests in flight)"
        details = {**route.details, "fallback": f"{full}: {model.name} to {step.name}",
                   "fallback_code": "saturated"}  # fmt: skip
        reason = f"{route.reason}; {full}, next in {model.name}'s chain"
        return Route(step.provider, step.name, reason, details), step_mode, step_why
    return route, mode, why
