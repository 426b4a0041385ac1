"""Where a job runs: the route, the mode and the size estimates routing stores on it."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from app.batching import service as batching_service
from app.catalog.catalog import Catalog
from app.kit.prompts import Request, history_text, user_content
from app.kit.text import estimate_tokens
from app.models import JobMode, JobState, RequestedMode
from app.routing import service as routing_service


class Placement(NamedTuple):
    """The route columns of a job and the state they put it in: ``waiting`` in its window,
    ``failed`` when no model can take it (``queued``, all unset, before routing)."""

    state: JobState
    provider: str | None
    model: str | None
    mode: JobMode | None
    route_reason: str | None
    estimated_tokens: int | None
    estimated_bytes: int | None
    routed_at: datetime | None
    error: str | None
    completed_at: datetime | None


UNROUTED = Placement(JobState.queued, None, None, None, None, None, None, None, None, None)


def place(
    job: Request,
    *,
    instruction: str | None,
    model_hint: str | None,
    tier_hint: str | None,
    requested_mode: RequestedMode,
    deadline: datetime | None,
    catalog: Catalog,
    now: datetime,
) -> Placement:
    """Route ``job`` (``instruction`` as stored: the default applied to documents) and pick
    its mode; a job no model can take fails here, with the reason as its error."""
    text = user_content(job)
    tokens = estimate_tokens(text) + estimate_tokens(job.system or "")
    if job.history:
        tokens += estimate_tokens(history_text(job.history))
    try:
        route = routing_service.route(
            catalog,
            text=text,
            tokens=tokens,
            instruction=instruction,
            model_hint=model_hint,
            tier_hint=tier_hint,
        )
    except routing_service.NoRoute as exc:
        return UNROUTED._replace(
            state=JobState.failed, error=str(exc), estimated_tokens=tokens, completed_at=now
        )
    mode, why = routing_service.choose_mode(
        catalog, provider=route.provider, requested=requested_mode, deadline=deadline, now=now
    )
    return Placement(
        state=JobState.waiting,
        provider=route.provider,
        model=route.model,
        mode=mode,
        route_reason=f"{route.reason}; {mode} mode ({why})",
        estimated_tokens=tokens,
        estimated_bytes=batching_service.estimate_bytes(job),
        routed_at=now,
        error=None,
        completed_at=None,
    )
