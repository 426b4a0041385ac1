"""The rule router: picks a job's provider and model from the catalog, then its mode."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from app.catalog.catalog import Catalog, ModelConfig
from app.kit.errors import ValidationFailed
from app.models import JobMode, RequestedMode
from app.routing.semantic import SemanticMatch
from app.routing.strategies import LearnedScore, Strategy

# Output tokens a job is expected to use when it sets no max_output_tokens (the expected
# cost in its routing record; `thrifty eval router --output-tokens` defaults to the same).
EXPECTED_OUTPUT_TOKENS = 256


class NoRoute(Exception):
    """No model in the catalog can take the job."""


@dataclass(frozen=True)
class Route:
    provider: str
    model: str
    reason: str
    # For the job's routing record: the strategy, the rule or tier or score, and the
    # candidates considered (model names).
    details: dict[str, Any] = field(default_factory=dict)


def validate_hints(
    catalog: Catalog, *, model: str | None, tier: str | None, mode: RequestedMode | None = None
) -> None:
    """Reject hints the catalog cannot honour, before anything is stored: an unknown model
    or tier, or ``flex`` for a pinned model its provider does not serve on a flex tier
    (OpenAI's flex tier, on the models the catalog marks ``flex``)."""
    if model is not None and not catalog.has_model(model):
        known = ", ".join(sorted(m.name for m in catalog.models))
        raise ValidationFailed(f"unknown model {model!r}; the catalog has: {known}")
    if model is not None and mode == RequestedMode.flex and not catalog.offers_flex(model):
        provider = catalog.model(model).provider
        flexible = ", ".join(sorted(m.name for m in catalog.models if catalog.offers_flex(m.name)))
        raise ValidationFailed(
            f"mode 'flex' is OpenAI's flex tier, which {model} ({provider}) is not served on: "
            f"use batch, realtime or auto, or a model with flex ({flexible or 'none'})"
        )
    if tier is not None and tier not in catalog.tiers:
        raise ValidationFailed(
            f"unknown tier {tier!r}; the catalog has: {', '.join(sorted(catalog.tiers))}"
        )


@lru_cache(maxsize=256)
def _any_phrase(phrases: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words only ("prove" must not match "improve" or "approved"); one compiled
    # alternation per rule, as the router runs once per job at ingest.
    return re.compile("|".join(rf"\b{re.escape(p.lower())}\b" for p in phrases))


def _cheapest_fitting(catalog: Catalog, tier: str, tokens: int) -> ModelConfig | None:
    fitting = [m for m in catalog.models if m.tier == tier and m.context_tokens >= tokens]
    return min(fitting, key=lambda m: (m.input_per_mtok, m.output_per_mtok), default=None)


def route(
    catalog: Catalog,
    *,
    text: str,
    tokens: int,
    instruction: str | None,
    model_hint: str | None,
    tier_hint: str | None,
) -> Route:
    """Choose where a job runs. Hints win; then the first matching rule; then the default tier.

    A tier whose models cannot hold the input falls back to the cheapest model that can.
    """
    if model_hint is not None:
        model = catalog.model(model_hint)
        if tokens > model.context_tokens:
            raise NoRoute(
                f"input of about {tokens} tokens exceeds {model.name}'s context window "
                f"of {model.context_tokens}"
            )
        pinned = {"strategy": Strategy.rules.value, "hint": "model", "candidates": [model.name]}
        return Route(model.provider, model.name, "model requested by the client", pinned)

    rule_name: str | None = None
    if tier_hint is not None:
        tier, reason = tier_hint, f"tier {tier_hint} requested by the client"
    else:
        tier, reason = catalog.default_tier, f"default tier {catalog.default_tier}"
        lowered = text.lower()
        for rule in catalog.rules:
            if rule.instruction_in and (
                instruction is None or instruction.strip().lower() not in rule.instruction_in
            ):
                continue
            if rule.keywords and not _any_phrase(tuple(rule.keywords)).search(lowered):
                continue
            if rule.min_tokens is not None and tokens < rule.min_tokens:
                continue
            tier, reason, rule_name = rule.tier, f"rule: {rule.name}", rule.name
            break

    in_tier = sorted(
        (m for m in catalog.models if m.tier == tier),
        key=lambda m: (m.input_per_mtok, m.output_per_mtok),
    )
    details: dict[str, Any] = {
        "strategy": Strategy.rules.value,
        "hint": "tier" if tier_hint is not None else None,
        "rule": rule_name,
        "tier": tier,
        "candidates": [m.name for m in in_tier],
    }
    chosen = _cheapest_fitting(catalog, tier, tokens)
    if chosen is None:
        # Context overflow: the tier's cheapest model's fallback chain first, then any model.
        first = min(
            (m for m in catalog.models if m.tier == tier),
            key=lambda m: (m.input_per_mtok, m.output_per_mtok),
        )
        for step in catalog.fallback_chain(first.name):
            if step.context_tokens >= tokens:
                reason += f"; {first.name} cannot hold {tokens} tokens, next in its chain"
                details["fallback"] = f"context overflow: {first.name} to {step.name}"
                return Route(step.provider, step.name, reason, details)
        fitting = [m for m in catalog.models if m.context_tokens >= tokens]
        if not fitting:
            raise NoRoute(f"input of about {tokens} tokens exceeds every model's context window")
        chosen = min(fitting, key=lambda m: (m.input_per_mtok, m.output_per_mtok))
        reason += f"; {tier} models cannot hold {tokens} tokens"
        details["fallback"] = f"context overflow: {tier} models to {chosen.name}"
    return Route(chosen.provider, chosen.name, reason, details)


def route_learned(catalog: Catalog, *, tokens: int, verdict: LearnedScore) -> Route:
    """The catalog's strong model when the learned router's score reaches its cut, else the
    weak one; an input the chosen model cannot hold goes down its fallback chain."""
    pair = catalog.learned
    if pair is None:  # the learned strategy is refused for a catalog without the pair
        raise LookupError("the catalog has no [learned] weak/strong pair")
    weak, strong = catalog.model(pair.weak_model), catalog.model(pair.strong_model)
    chosen = strong if verdict.strong else weak
    target = f"quality target {verdict.quality_target:g}"
    if verdict.threshold == math.inf:
        reason = (
            f"learned: the weak model alone kept {verdict.expected_quality:.0%} of the strong "
            f"model's quality in training ({target}); {chosen.name}"
        )
    elif verdict.threshold == -math.inf:
        reason = f"learned: every prompt goes to the strong model for {target}; {chosen.name}"
    else:
        compare = ">=" if verdict.strong else "<"
        reason = (
            f"learned: score {verdict.score:.4f} {compare} threshold {verdict.threshold:.4f} "
            f"for {target}; {chosen.name}"
        )
    details: dict[str, Any] = {
        "strategy": Strategy.learned.value,
        "score": round(verdict.score, 6),
        "threshold": round(verdict.threshold, 6) if math.isfinite(verdict.threshold) else None,
        "quality_target": verdict.quality_target,
        "expected_quality": round(verdict.expected_quality, 4),
        "expected_strong_share": round(verdict.expected_strong_share, 4),
        "candidates": [weak.name, strong.name],
    }
    if verdict.training_threshold is not None and math.isfinite(verdict.training_threshold):
        # the cut the training folds gave; ``threshold`` is the tenant's running one
        details["training_threshold"] = round(verdict.training_threshold, 6)
    if tokens > chosen.context_tokens:
        step = next((m for m in catalog.fallback_chain(chosen.name) if m.context_tokens >= tokens),
                    None)  # fmt: skip
        if step is None:
            raise NoRoute(
                f"input of about {tokens} tokens exceeds {chosen.name}'s context window and "
                "every model of its fallback chain"
            )
        reason += f"; {chosen.name} cannot hold {tokens} tokens, next in its chain"
        details["fallback"] = f"context overflow: {chosen.name} to {step.name}"
        chosen = step
    return Route(chosen.provider, chosen.name, reason, details)


def choose_mode(
    catalog: Catalog,
    *,
    model: str,
    requested: RequestedMode,
    deadline: datetime | None,
    now: datetime,
) -> tuple[JobMode, str]:
    """``batch``, ``flex`` or ``realtime`` for a job routed to ``model``, and why.

    ``auto`` takes the discounted batch path when the job's deadline (if any) leaves room for
    the provider's whole completion window, OpenAI's flex tier (batch prices, minutes of
    latency) when it leaves room for the provider's ``flex_latency_seconds`` and the model
    is served on flex, and the realtime path otherwise. ``flex`` asked for a model without
    flex (a job that pinned no model, routed to one: intake refuses a pinned one) is placed
    as ``auto``.
    """
    provider = catalog.model(model).provider
    config = catalog.providers[provider]
    flex = catalog.offers_flex(model)
    if requested == RequestedMode.flex:
        if flex:
            return JobMode.flex, "flex requested"
        mode, why = choose_mode(
            catalog, model=model, requested=RequestedMode.auto, deadline=deadline, now=now
        )
        return mode, f"flex requested, but {model} ({provider}) has no flex tier; {why}"
    has_batch = config.kind != "openai_realtime"
    has_realtime = config.kind != "anthropic_batch"
    wants_batch = requested == RequestedMode.batch
    wants_realtime = requested == RequestedMode.realtime
    if wants_batch or (wants_realtime and not has_realtime):
        if not has_batch:
            return JobMode.realtime, f"{provider} has no batch API"
        why = "batch requested" if wants_batch else f"{provider} has no realtime API"
        return JobMode.batch, why
    if wants_realtime or not has_batch:
        why = "realtime requested" if has_batch else f"{provider} has no batch API"
        return JobMode.realtime, why
    if deadline is None:
        return JobMode.batch, "auto: no deadline"
    window = timedelta(seconds=config.completion_window_seconds)
    batch_window = f"the {config.completion_window} batch window"
    if deadline - now >= window:
        return JobMode.batch, f"auto: the deadline allows {batch_window}"
    if not has_realtime:
        why = f"auto: deadline inside {batch_window}, but {provider} has no realtime API"
        return JobMode.batch, why
    flex_latency = f"flex's expected {config.flex_latency_seconds:g} s latency"
    if flex:
        if deadline - now >= timedelta(seconds=config.flex_latency_seconds):
            why = f"auto: the deadline is inside {batch_window} but allows {flex_latency}"
            return JobMode.flex, why
        return JobMode.realtime, f"auto: the deadline is sooner than {flex_latency}"
    return JobMode.realtime, f"auto: the deadline is sooner than {batch_window}"


def avoid_open_circuits(
    catalog: Catalog, route: Route, *, tokens: int, open_providers: frozenset[str]
) -> Route:
    """A route to a provider whose circuit is open (a 5xx / 429 storm) goes to the first
    model of its model's fallback chain on a provider whose circuit is closed that holds the
    input. A model the client pinned stays (so does a job with no such model in its chain:
    it waits in its window, and the provider's own retries apply)."""
    if route.provider not in open_providers or route.details.get("hint") == "model":
        return route
    for step in catalog.fallback_chain(route.model):
        if step.provider not in open_providers and step.context_tokens >= tokens:
            why = f"{route.provider}'s circuit is open (5xx/429 storm)"
            details = {**route.details, "fallback": f"{why}: {route.model} to {step.name}",
                       "fallback_code": "circuit_open"}  # fmt: skip
            reason = f"{route.reason}; {why}, next in {route.model}'s chain"
            return Route(step.provider, step.name, reason, details)
    return route


def route_semantic(
    catalog: Catalog, *, text: str, tokens: int, instruction: str | None, match: SemanticMatch
) -> Route:
    """The matched semantic route's tier (its cheapest model that holds the input), or the
    rules when the prompt is near no route; either way the record has the figures."""
    figures = {"semantic_route": match.route, "similarity": match.similarity,
               "threshold": match.threshold}  # fmt: skip
    cut = f"similarity {match.similarity:.3f} {'>=' if match.matched else '<'} threshold "
    cut += f"{match.threshold:.3f}"
    if not match.matched:
        base = route(catalog, text=text, tokens=tokens, instruction=instruction,
                     model_hint=None, tier_hint=None)  # fmt: skip
        note = f"no semantic route matched (nearest: {match.route}, {cut})"
        return Route(base.provider, base.model, f"{base.reason}; {note}",
                     {**base.details, **figures, "note": note})  # fmt: skip
    base = route(catalog, text=text, tokens=tokens, instruction=instruction,
                 model_hint=None, tier_hint=match.tier)  # fmt: skip
    asked = f"tier {match.tier} requested by the client"
    reason = f"semantic: {match.route} ({cut}), tier {match.tier}" + base.reason[len(asked) :]
    details = {**base.details, **figures, "strategy": Strategy.semantic.value, "hint": None}
    return Route(base.provider, base.model, reason, details)
