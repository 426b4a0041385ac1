"""Provider load: a model whose Batch API queue is full spills work to its fallback chain.

OpenAI limits the input tokens enqueued in batches per model (``enqueued_token_limit`` in the
catalog; the figure depends on the account's usage tier, so the shipped catalog sets none): a
batch that would pass it is refused. The router counts a model's enqueued tokens (intake asks
``app/jobs/load.py``: its unfinished batch-mode jobs' estimated input tokens) and sends a job
that would pass the limit to the first model of the chain with room instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.catalog.catalog import Catalog
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
        details = {**route.details, "fallback": f"{why}: {model.name} to {step.name}"}
        reason = f"{route.reason}; {why}, next in {model.name}'s chain"
        return Route(step.provider, step.name, reason, details)
    return route
