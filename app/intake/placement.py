"""Where a job runs: the route, the mode and the size estimates routing stores on it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from app.batching import service as batching_service
from app.catalog.catalog import Catalog
from app.jobs import load as jobs_load
from app.kit.prompts import Request, history_text, user_content
from app.kit.text import estimate_tokens
from app.ledger import service as ledger_service
from app.models import JobMode, JobState, RequestedMode
from app.providers import breaker
from app.routing import budgets
from app.routing import load as routing_load
from app.routing import service as routing_service
from app.routing.budgets import Exceeded
from app.routing.semantic import SemanticMatch
from app.routing.service import EXPECTED_OUTPUT_TOKENS
from app.routing.strategies import LearnedScore, Strategy


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
    # Why it was routed (``routing_record``); None while queued.
    routing: dict[str, Any] | None = None
    # Its expected cost, reserved against the tenant's budgets while it is in flight.
    reserved_usd: Decimal | None = None


UNROUTED = Placement(JobState.queued, None, None, None, None, None, None, None, None, None)


def input_tokens(job: Request, *, text: str | None = None) -> int:
    """The estimated input tokens of ``job``: its user content (``text``, when the caller
    has it), system prompt and history."""
    tokens = estimate_tokens(user_content(job) if text is None else text)
    tokens += estimate_tokens(job.system or "")
    if job.history:
        tokens += estimate_tokens(history_text(job.history))
    return tokens


def context_overflow(job: Request, *, model_hint: str | None, catalog: Catalog) -> str | None:
    """Why no model ``job`` can reach holds its input (the model it pins, else any model of
    the catalog: a tier falls back to whichever model holds it), or None when one does. The
    router would fail such a job; intake refuses it before anything is stored."""
    tokens = input_tokens(job)
    if model_hint is not None and catalog.has_model(model_hint):
        model = catalog.model(model_hint)
        if tokens > model.context_tokens:
            return (
                f"the input (prompt, document, system prompt and history) is about {tokens} "
                f"tokens, more than {model.name}'s context window of {model.context_tokens}"
            )
        return None
    largest = max(catalog.models, key=lambda m: m.context_tokens)
    if tokens > largest.context_tokens:
        return (
            f"the input (prompt, document, system prompt and history) is about {tokens} tokens, "
            f"more than any model's context window (the largest: {largest.name}, "
            f"{largest.context_tokens})"
        )
    return None


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
    max_output_tokens: int | None = None,
    strategy: Strategy = Strategy.rules,
    learned: LearnedScore | None = None,
    semantic: SemanticMatch | None = None,
    note: str | None = None,
    budget: Exceeded | None = None,
    load: dict[str, int] | None = None,
    busy: dict[str, int] | None = None,
) -> Placement:
    """Route ``job`` (``instruction`` as stored: the default applied to documents) and pick
    its mode; a job no model can take fails here, with the reason as its error.

    ``learned`` / ``semantic``: the learned router's verdict, or the nearest semantic route,
    for a job of a tenant with that ``strategy`` that pins no model or tier; ``note`` says
    why such a tenant's job was routed by the rules instead. ``budget``: the budget a
    ``downgrade`` tenant has reached; the job goes to a cheaper model. ``load``: the
    enqueued tokens of the models with a queue limit (``enqueued_load``); a batch job whose
    model's queue is full spills down its chain, and what it adds is counted in ``load``.
    ``busy``: the realtime and flex requests in flight of the models with a concurrency limit
    (``in_flight_load``); a realtime or flex job whose model is saturated spills down its
    chain likewise, and is counted in ``busy``.
    """
    text = user_content(job)
    tokens = input_tokens(job, text=text)
    try:
        if learned is not None:
            route = routing_service.route_learned(catalog, tokens=tokens, verdict=learned)
        elif semantic is not None:
            route = routing_service.route_semantic(
                catalog, text=text, tokens=tokens, instruction=instruction, match=semantic
            )
        else:
            route = routing_service.route(
                catalog,
                text=text,
                tokens=tokens,
                instruction=instruction,
                model_hint=model_hint,
                tier_hint=tier_hint,
            )
        open_providers = breaker.open_providers(catalog)
        route = routing_service.avoid_open_circuits(
            catalog, route, tokens=tokens, open_providers=open_providers
        )
        if budget is not None:
            route = budgets.downgrade(
                catalog, route, tokens=tokens,
                output_tokens=max_output_tokens or EXPECTED_OUTPUT_TOKENS,
                exceeded=budget, open_providers=open_providers,
            )  # fmt: skip
    except routing_service.NoRoute as exc:
        return UNROUTED._replace(
            state=JobState.failed, error=str(exc), estimated_tokens=tokens, completed_at=now
        )
    mode, why = routing_service.choose_mode(
        catalog, model=route.model, requested=requested_mode, deadline=deadline, now=now
    )
    if load and mode == JobMode.batch and route.model in load:
        spilled = routing_load.spill_over(catalog, route, tokens=tokens, enqueued=load,
                                          open_providers=open_providers)  # fmt: skip
        if spilled is not route:
            route = spilled
            mode, why = routing_service.choose_mode(catalog, model=route.model,
                requested=requested_mode, deadline=deadline, now=now)  # fmt: skip
        if mode == JobMode.batch and route.model in load:
            load[route.model] += tokens
    if busy and mode != JobMode.batch and route.model in busy:
        spilled, mode, why = routing_load.spill_busy(
            catalog, route, mode=mode, why=why, tokens=tokens, busy=busy,
            open_providers=open_providers,
            choose=lambda name: routing_service.choose_mode(catalog, model=name,
                requested=requested_mode, deadline=deadline, now=now),
        )  # fmt: skip
        route = spilled
        if mode != JobMode.batch and route.model in busy:
            busy[route.model] += 1
    output_tokens = max_output_tokens or EXPECTED_OUTPUT_TOKENS
    record = routing_record(route, catalog=catalog, mode=mode, tokens=tokens,
        output_tokens=output_tokens, requested_mode=requested_mode, deadline=deadline,
        now=now, strategy=strategy, note=note)  # fmt: skip
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
        routing=record,
        reserved_usd=Decimal(record["expected_cost_usd"]),
    )


def enqueued_load(session: Session, catalog: Catalog) -> dict[str, int] | None:
    """The enqueued tokens of the catalog's models with a queue limit; None when it has none
    (then nothing is read)."""
    limited = routing_load.limited_models(catalog)
    return jobs_load.enqueued_tokens(session, models=limited) if limited else None


def in_flight_load(session: Session, catalog: Catalog) -> dict[str, int] | None:
    """The realtime and flex requests in flight of the catalog's models with a concurrency
    limit; None when it has none (then nothing is read)."""
    limited = routing_load.concurrency_limited(catalog)
    return jobs_load.in_flight_requests(session, models=limited) if limited else None


def routing_record(
    route: routing_service.Route,
    *,
    catalog: Catalog,
    mode: JobMode,
    tokens: int,
    output_tokens: int,
    requested_mode: RequestedMode,
    deadline: datetime | None,
    now: datetime,
    strategy: Strategy,
    note: str | None,
) -> dict[str, Any]:
    """Why a job went where it did: the route's details (strategy, rule or score and
    threshold, candidates) with each candidate's expected cost, and the chosen one's."""

    usage = ledger_service.TokenUsage(input_tokens=tokens, output_tokens=output_tokens)
    chosen = catalog.model(route.model)
    names: list[str] = route.details.get("candidates", [])
    costs: dict[str, str] = {}
    for name in [*names, route.model]:
        if name in costs:
            continue
        model = chosen if name == route.model else catalog.model(name)
        candidate_mode = mode
        if name != route.model:  # its own mode (its provider's APIs, flex or not)
            candidate_mode, _ = routing_service.choose_mode(
                catalog, model=name, requested=requested_mode, deadline=deadline, now=now
            )
        costs[name] = str(ledger_service.paid_price(model, candidate_mode, usage))
    record = {key: value for key, value in route.details.items() if value is not None}
    record.update(
        tenant_strategy=strategy.value,
        chosen=route.model,
        mode=mode.value,
        candidates=[{"model": name, "expected_cost_usd": costs[name]} for name in names],
        expected_input_tokens=tokens,
        expected_output_tokens=output_tokens,
        expected_cost_usd=costs[route.model],
    )
    if note:
        record["note"] = note
    return record
