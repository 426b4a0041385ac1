"""Down the fallback chain after the provider answered: a request its model will not take
(``providers.base.FALLBACK_CODES``: refused content, a model no longer served, a prompt too
long for the model's window) goes back to a window on the next model of that model's
``fallbacks`` chain, and its ``route_reason`` and ``routing`` say so.

The next model is the first of the chain not tried yet for this job (``routing.tried``)
whose provider's circuit is closed and that holds the job's input (after a context
overflow: a larger window than the model that refused it). A job whose client pinned its
model, whose chain has no such model, or that has no routing record (routed before there
were any: nothing says which models it tried), fails with the provider's reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from app.catalog.catalog import Catalog, ModelConfig
from app.jobs import repository as job_repository
from app.jobs import transitions
from app.jobs.repository import BatchMember, RouteFacts, Window
from app.jobs.transitions import Retry
from app.ledger import service as ledger_service
from app.models import JobState
from app.providers import breaker
from app.providers.base import FALLBACK_CODES, BatchResult
from app.routing import service as routing_service


def takes_fallback(result: BatchResult) -> bool:
    """Whether the provider's answer to this request sends it down the chain."""
    return result.error_code in FALLBACK_CODES


def _next_model(
    catalog: Catalog, model: ModelConfig, *, code: str, tokens: int, tried: Sequence[str],
    open_providers: frozenset[str],
) -> ModelConfig | None:  # fmt: skip
    for step in catalog.fallback_chain(model.name):
        if step.name in tried or step.provider in open_providers or step.context_tokens < tokens:
            continue
        if code == "context_length_exceeded" and step.context_tokens <= model.context_tokens:
            continue
        return step
    return None


def reroutes(
    session: Session,
    *,
    failures: Sequence[tuple[BatchMember, BatchResult]],
    catalog: Catalog,
    now: datetime,
) -> dict[uuid.UUID, Retry]:
    """The retries on the next model of their chains of the jobs that have one."""
    if not failures:
        return {}
    facts = job_repository.route_facts(session, ids=[job.id for job, _ in failures])
    open_providers = breaker.open_providers(catalog)
    found: dict[uuid.UUID, Retry] = {}
    for job, result in failures:
        fact = facts.get(job.id)
        name = job.model or ""
        if fact is None or fact.model_hint is not None or not catalog.has_model(name):
            continue  # a pinned model is the client's choice: its job fails with the reason
        if fact.routing is None:
            continue  # routed before routing records: no record of the models tried
        retry = _reroute(catalog, job, result, fact=fact, open_providers=open_providers, now=now)
        if retry is not None:
            found[job.id] = retry
    return found


def _reroute(
    catalog: Catalog,
    job: BatchMember,
    result: BatchResult,
    *,
    fact: RouteFacts,
    open_providers: frozenset[str],
    now: datetime,
) -> Retry | None:
    model = catalog.model(job.model or "")
    code = result.error_code or ""
    tried = [*(fact.routing or {}).get("tried", []), model.name]
    step = _next_model(catalog, model, code=code, tokens=fact.estimated_tokens or 0,
                       tried=tried, open_providers=open_providers)  # fmt: skip
    if step is None:
        return None
    why = f"{FALLBACK_CODES[code].format(model=model.name)} ({code})"
    error = f"provider error: {result.error}"
    return _move(catalog, job.id, fact, model=model, step=step, why=why, tried=tried,
                 attempts=job.attempts, error=error, now=now, code=code)  # fmt: skip


def leave_open_circuit(
    session: Session,
    *,
    window: Window,
    catalog: Catalog,
    open_providers: frozenset[str],
    now: datetime,
) -> int:
    """The waiting jobs of a window whose provider's circuit is open (a 5xx / 429 storm) go
    to the first model of their model's chain on a closed circuit that holds their input
    (``routing.fallback`` says so), instead of waiting for a provider that is down. Pinned
    jobs, jobs without a routing record and jobs whose chain has no such model stay (the
    provider's own retries apply). Returns how many moved."""
    rows = job_repository.lock_waiting(session, provider=window.provider, model=window.model,
                                       mode=window.mode, limit=window.size)  # fmt: skip
    facts = job_repository.route_facts(session, ids=[row[0] for row in rows])
    model = catalog.model(window.model)
    why = f"{window.provider}'s circuit is open (5xx/429 storm)"
    moves: list[Retry] = []
    for job_id, tokens, _ in rows:
        fact = facts[job_id]
        if fact.model_hint is not None or fact.routing is None:
            continue
        tried = list(fact.routing.get("tried", []))
        step = _next_model(catalog, model, code="", tokens=tokens or 0, tried=tried,
                           open_providers=open_providers)  # fmt: skip
        if step is not None:
            moves.append(_move(catalog, job_id, fact, model=model, step=step, why=why,
                               tried=tried, attempts=fact.attempts, error=why,
                               now=now))  # fmt: skip
    transitions.requeue(session, moves, from_state=JobState.waiting)
    return len(moves)


def _move(
    catalog: Catalog,
    job_id: uuid.UUID,
    fact: RouteFacts,
    *,
    model: ModelConfig,
    step: ModelConfig,
    why: str,
    tried: list[str],
    attempts: int,
    error: str,
    now: datetime,
    code: str = "circuit_open",
) -> Retry:
    """The job on ``step``, its mode chosen for ``step``'s provider, its record extended
    (``fallback_code``: the provider's code, or ``circuit_open``)."""
    mode, why_mode = routing_service.choose_mode(
        catalog, model=step.name, requested=fact.requested_mode, deadline=fact.deadline,
        now=now,
    )  # fmt: skip
    routing = dict(fact.routing or {})
    usage = ledger_service.TokenUsage(
        input_tokens=int(routing.get("expected_input_tokens") or fact.estimated_tokens or 0),
        output_tokens=int(
            routing.get("expected_output_tokens") or routing_service.EXPECTED_OUTPUT_TOKENS
        ),
    )
    routing.update(
        chosen=step.name,
        mode=mode.value,
        fallback=f"{why}: {model.name} to {step.name}",
        fallback_code=code,
        expected_cost_usd=str(ledger_service.paid_price(step, mode, usage)),
    )
    if tried:
        routing["tried"] = tried
    reason = (
        f"{fact.route_reason or 'routed'}; then {why}, next in {model.name}'s chain: "
        f"{step.name}; {mode} mode ({why_mode})"
    )
    return Retry(job_id, attempts, mode, error, provider=step.provider, model=step.name,
                 route_reason=reason, routing=routing,
                 reserved_usd=Decimal(routing["expected_cost_usd"]))  # fmt: skip
