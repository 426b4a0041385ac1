"""The routing settings' API shapes, and the quality target a job may carry."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.kit.money import Money
from app.routing.budgets import DEFAULT_POLICY, BudgetPolicy
from app.routing.strategies import DEFAULT_QUALITY_TARGET, Strategy

# A fraction of the strong model's quality, in (0, 1]; a JSON number (1 and 0.9 alike).
QualityTarget = Annotated[float, Field(gt=0, le=1, strict=True, allow_inf_nan=False)]
# USD, a JSON number or a decimal string, at least 0.
Budget = Annotated[Decimal, Field(ge=0, le=10**12, decimal_places=12, allow_inf_nan=False)]


class RoutingSettingsIn(BaseModel):
    """Fields left out are unchanged; ``null`` resets one to the default."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy | None = Field(
        default=None,
        description="`rules` (the catalog's rules; the default), `learned` (the trained "
        "router chooses between the catalog's weak and strong model) or `semantic` (the "
        "catalog's routes of example utterances pick the tier).",
    )
    quality_target: QualityTarget | None = Field(
        default=None,
        description="For `learned`: the fraction of the strong model's quality to keep, in "
        f"(0, 1] (default {DEFAULT_QUALITY_TARGET}); a job's own `quality_target` wins.",
    )
    daily_budget_usd: Budget | None = Field(
        default=None,
        description="The most the tenant's jobs may cost in a UTC day (the ledger's actual "
        "costs of jobs that ended); `null`: no daily budget.",
    )
    monthly_budget_usd: Budget | None = Field(
        default=None, description="The same per UTC calendar month; `null`: none."
    )
    budget_policy: BudgetPolicy | None = Field(
        default=None,
        description="Once a budget is reached: `reject` (the default: new submissions get a "
        "429 `budget_exceeded` with Retry-After to the end of the day or month) or "
        "`downgrade` (new jobs go to models cheaper than the one routing chose; a job "
        "pinning a `model` is refused with the same 429).",
    )


class RoutingSettingsOut(BaseModel):
    strategy: Strategy
    quality_target: float
    learned_available: bool = Field(
        description="Whether this service has a trained router (`learned` can be chosen)."
    )
    weak_model: str | None = Field(description="The learned router's weak model.")
    strong_model: str | None = Field(description="The learned router's strong model.")
    semantic_routes: list[str] = Field(
        default_factory=list, description="The catalog's semantic routes (`semantic`)."
    )
    daily_budget_usd: Money | None = None
    monthly_budget_usd: Money | None = None
    budget_policy: BudgetPolicy = DEFAULT_POLICY


class CandidateOut(BaseModel):
    model: str
    expected_cost_usd: Money = Field(description="This job's expected cost on the model.")


class RoutingOut(BaseModel):
    """Why a job was routed where it was (set when it is routed)."""

    strategy: Strategy = Field(description="What routed the job: `rules`, `learned` or `semantic`.")
    tenant_strategy: Strategy = Field(description="The tenant's strategy when it was routed.")
    note: str | None = Field(
        default=None,
        description="Why a `learned` or `semantic` tenant's job was routed by the rules.",
    )
    hint: Literal["model", "tier"] | None = Field(
        default=None, description="The client pinned a model or tier."
    )
    rule: str | None = Field(default=None, description="`rules`: the rule that matched.")
    tier: str | None = Field(default=None, description="`rules`: the tier chosen in.")
    score: float | None = Field(
        default=None, description="`learned`: the expected gain of the strong model."
    )
    threshold: float | None = Field(
        default=None,
        description="`learned`: the cut (strong when score >= threshold); `semantic`: the "
        "route's similarity threshold.",
    )
    semantic_route: str | None = Field(default=None, description="`semantic`: the nearest route.")
    similarity: float | None = Field(
        default=None, description="`semantic`: the prompt's similarity to that route."
    )
    quality_target: float | None = Field(default=None, description="`learned`: the target.")
    expected_quality: float | None = Field(
        default=None,
        description="`learned`: fraction of the all-strong quality this cut kept on the "
        "router's held-out training folds.",
    )
    expected_strong_share: float | None = Field(
        default=None, description="`learned`: share of strong calls at this cut there."
    )
    candidates: list[CandidateOut] = Field(description="The models considered.")
    chosen: str
    mode: str
    fallback: str | None = Field(default=None, description="A fallback taken, and why.")
    fallback_code: str | None = Field(
        default=None,
        description="Why the last fallback was taken: the provider's code (`refusal`, "
        "`content_policy_violation`, `model_not_found`, `context_length_exceeded`...), "
        "`circuit_open`, `queue_full` or `saturated`.",
    )
    tried: list[str] | None = Field(
        default=None,
        description="The models the provider would not take the job on (a refusal, a model "
        "no longer served, a prompt too long), in order; `chosen` is the next of the chain.",
    )
    budget: str | None = Field(
        default=None, description="The budget reached and what it did (`downgrade` policy)."
    )
    expected_input_tokens: int
    expected_output_tokens: int = Field(
        description="The job's max_output_tokens, or 256 when it sets none."
    )
    expected_cost_usd: Money = Field(description="Expected cost on the chosen model and mode.")
