"""The model catalog: providers, models with prices and window settings, routing rules.

Validated with pydantic when first loaded; a bad file raises :class:`CatalogError` naming the
file, the field (``models.2.input_per_mtok``) and what is wrong with it.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.config import Settings, get_settings


class CatalogError(Exception):
    """The catalog file cannot be read or does not validate; the message names the field."""


# What a model is good for; the router's candidates for a task kind are the models that list it.
Capability = Literal[
    "summarise",
    "extract",
    "classify",
    "qa",
    "code",
    "reasoning",
    "maths",
    "long-context",
    "vision",
    "tools",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    # openai_batch: OpenAI Files + Batches; anthropic_batch: Anthropic Message Batches;
    # openai_realtime: any OpenAI-compatible chat endpoint (vLLM, Ollama, ...), called per
    # request. The two OpenAI kinds also serve OpenAI-compatible embeddings where the server
    # has them (providers.registry.get_embeddings); Anthropic has no embeddings API.
    kind: Literal["openai_batch", "anthropic_batch", "openai_realtime"]
    base_url: str
    base_url_env: str | None = None
    api_key_env: str | None = None
    completion_window: str = "24h"
    anthropic_version: str = "2023-06-01"
    # Per-batch limits; the provider's published limits when unset.
    max_requests: int | None = Field(default=None, gt=0)
    max_bytes: int | None = Field(default=None, gt=0)
    # Realtime calls in flight at once, per flushed window.
    concurrency: int = Field(default=8, gt=0)
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=5, gt=0)
    # Circuit breaker over this provider's 5xx / 429 answers: it opens when at least
    # breaker_min_calls calls of the last breaker_window_seconds were answered and
    # breaker_failure_ratio of them failed; new work then goes down each model's fallback
    # chain until breaker_cooldown_seconds have passed.
    breaker_window_seconds: float = Field(default=60.0, gt=0)
    breaker_min_calls: int = Field(default=20, gt=0)
    breaker_failure_ratio: float = Field(default=0.5, gt=0, le=1)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    # OpenAI's flex tier (openai_batch providers only): the latency ``auto`` expects of a
    # flex request when it places a job by its deadline, and the timeout of one flex call
    # (OpenAI advises raising the default 10 minutes to 15).
    flex_latency_seconds: float = Field(default=600.0, gt=0)
    flex_timeout_seconds: float = Field(default=900.0, gt=0)
    # Deadline escalation: a batch-mode job whose batch has not ended this long before its
    # deadline is sent again on a faster path (flex or realtime), its late line ignored.
    escalation_margin_seconds: float = Field(default=900.0, gt=0)

    @property
    def has_flex(self) -> bool:
        """OpenAI itself serves ``service_tier: "flex"``; other servers and Anthropic don't."""
        return self.kind == "openai_batch"

    @property
    def has_realtime(self) -> bool:
        """Whether requests can be sent one by one (Anthropic is reached by batch only)."""
        return self.kind != "anthropic_batch"

    def resolved_base_url(self) -> str:
        return (
            Settings.variable(self.base_url_env) if self.base_url_env else None
        ) or self.base_url

    @property
    def completion_window_seconds(self) -> float:
        """The batch completion window (``24h``, ``90m``, ``3600s``) in seconds."""
        value = self.completion_window.strip().lower()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        if value and value[-1] in units:
            return float(value[:-1]) * units[value[-1]]
        return float(value)

    def api_key(self) -> str:
        # The simulator accepts any key; real providers need the variable set.
        return (Settings.variable(self.api_key_env) if self.api_key_env else None) or (
            "thrifty-simulator"
        )


class ModelConfig(_Strict):
    name: str
    provider: str
    tier: str
    # Money is Decimal from the file onwards (TOML floats are read through their text).
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    # Provider prompt caching: the price of an input token read from the provider's cache,
    # and of one written to it (Anthropic's cache creation); unset means no discount.
    cached_input_per_mtok: Decimal | None = Field(default=None, ge=0)
    cache_write_per_mtok: Decimal | None = Field(default=None, ge=0)
    # The shortest prefix the provider caches (OpenAI 1024 tokens; Anthropic 1024 to 4096 by
    # model); unset means the model has no prompt caching and no prefix is marked for it.
    min_cache_tokens: int | None = Field(default=None, gt=0)
    batch_discount: Decimal = Field(default=Decimal("0.5"), ge=0, lt=1)
    context_tokens: int = Field(gt=0)
    # The longest answer the model can give (requests asking for more overflow to the chain).
    max_output_tokens: int | None = Field(default=None, gt=0)
    capabilities: frozenset[Capability] = frozenset()
    # Optional quality per task kind (0..1, e.g. accuracy on a benchmark of that kind).
    quality: dict[str, float] = Field(default_factory=dict)
    # Models tried in order when this one cannot take a job (provider outage, context
    # overflow, refusal, model no longer served, saturated queue).
    fallbacks: list[str] = Field(default_factory=list)
    # The provider's queue limit for this model (OpenAI's enqueued tokens per model) and
    # the requests in flight a self-hosted server takes; unset means no limit is known.
    enqueued_token_limit: int | None = Field(default=None, gt=0)
    max_concurrent_requests: int | None = Field(default=None, gt=0)
    # Where the prices come from and when they were read.
    price_source: str | None = None
    price_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    # Batch window: flush at max_size jobs, max_tokens estimated input tokens, max_bytes of
    # batch file (never above the provider's limit), or when the oldest job waited max_wait.
    max_size: int = Field(default=1000, gt=0, le=50_000)
    max_tokens: int = Field(default=2_000_000, gt=0)
    max_bytes: int | None = Field(default=None, gt=0)
    max_wait_seconds: float = Field(default=10, gt=0)
    # Realtime window: micro-batches of concurrent calls, flushed much sooner.
    realtime_max_size: int = Field(default=64, gt=0, le=10_000)
    realtime_max_wait_seconds: float = Field(default=0.05, gt=0)
    # Provider attempts per job for retryable failures (expired, rate-limited, 5xx lines).
    max_attempts: int = Field(default=3, gt=0)
    # What an expired request does next: another batch, or the realtime path.
    on_expiry: Literal["resubmit", "realtime"] = "resubmit"
    # Whether the provider serves this model on its flex tier (OpenAI's service_tier "flex",
    # on some models only): ``mode: "flex"`` pinning a model without it is a 422, and
    # ``auto`` places only these on flex. docs/providers.md has OpenAI's list and its date.
    flex: bool = False

    @model_validator(mode="after")
    def _quality_in_range(self) -> ModelConfig:
        for kind, score in self.quality.items():
            if not 0 <= score <= 1:
                raise ValueError(f"quality.{kind} must be within [0, 1], got {score}")
        return self


class Rule(_Strict):
    name: str
    tier: str
    instruction_in: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    min_tokens: int | None = None


class LearnedRouting(_Strict):
    """The pair the learned router chooses between, and where its trained model lives."""

    weak_model: str
    strong_model: str
    # A directory written by ``thrifty router train``; unset means the learned strategy is
    # unavailable (tenants asking for it get a 422).
    router_dir: str | None = None


class SemanticRoute(_Strict):
    """A route of the semantic strategy: prompts like its example utterances go to its tier.
    Its similarity threshold is fitted on the catalog's utterances when not given."""

    name: str
    tier: str
    utterances: list[str] = Field(min_length=2)
    threshold: float | None = Field(default=None, gt=0, le=1)


class AliasTarget(_Strict):
    """What a model name means: pin a catalog model, or let the router choose in a tier."""

    model: str | None = None
    tier: str | None = None

    @model_validator(mode="after")
    def _one(self) -> AliasTarget:
        if (self.model is None) == (self.tier is None):
            raise ValueError("give exactly one of `model` (pin) or `tier` (route within it)")
        return self


class Alias(AliasTarget):
    """A model name clients send (the OpenAI-compatible API), with per-tenant overrides
    keyed by tenant name."""

    tenants: dict[str, AliasTarget] = Field(default_factory=dict)


class Catalog(_Strict):
    naive_model: str
    default_tier: str
    learned: LearnedRouting | None = None
    semantic_routes: list[SemanticRoute] = Field(default_factory=list)
    # Utterances of no route: negatives when a route's threshold is fitted.
    semantic_none: list[str] = Field(default_factory=list)
    providers: dict[str, ProviderConfig]
    models: list[ModelConfig] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    aliases: dict[str, Alias] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalog:
        names = {m.name for m in self.models}
        tiers = {m.tier for m in self.models}
        if len(names) != len(self.models):
            raise ValueError("model names must be unique")
        for model in self.models:
            if model.provider not in self.providers:
                raise ValueError(f"model {model.name} names unknown provider {model.provider}")
            if model.flex and not self.providers[model.provider].has_flex:
                raise ValueError(
                    f"model {model.name}: flex = true, but provider {model.provider} has no "
                    "flex tier (OpenAI's own API only)"
                )
        if self.naive_model not in names:
            raise ValueError(f"naive_model {self.naive_model} is not in the catalog")
        for tier in [
            self.default_tier,
            *(r.tier for r in self.rules),
            *(r.tier for r in self.semantic_routes),
        ]:
            if tier not in tiers:
                raise ValueError(f"tier {tier} has no model")
        for model in self.models:
            for step in model.fallbacks:
                if step not in names:
                    raise ValueError(f"model {model.name}: fallbacks names unknown model {step}")
                if step == model.name:
                    raise ValueError(f"model {model.name}: fallbacks must not name itself")
        for alias, policy in self.aliases.items():
            for who, target in [
                ("", policy),
                *((f".tenants.{t}", p) for t, p in policy.tenants.items()),
            ]:
                if target.model is not None and target.model not in names:
                    raise ValueError(f"aliases.{alias}{who}: unknown model {target.model}")
                if target.tier is not None and target.tier not in tiers:
                    raise ValueError(f"aliases.{alias}{who}: tier {target.tier} has no model")
        if self.learned is not None:
            for field in ("weak_model", "strong_model"):
                name = getattr(self.learned, field)
                if name not in names:
                    raise ValueError(f"learned.{field} {name} is not in the catalog")
        return self

    @property
    def tiers(self) -> set[str]:
        return {m.tier for m in self.models}

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def alias(self, name: str, *, tenant: str) -> AliasTarget | None:
        """The policy ``name`` stands for, for ``tenant``: its own override, else the
        alias's; ``None`` when ``name`` is no alias."""
        policy = self.aliases.get(name)
        if policy is None:
            return None
        return policy.tenants.get(tenant, policy)

    def offers_flex(self, name: str) -> bool:
        """Whether model ``name`` can be sent on its provider's flex tier."""
        model = self.model(name)
        return model.flex and self.providers[model.provider].has_flex

    def has_model(self, name: str) -> bool:
        return any(m.name == name for m in self.models)

    def fallback_chain(self, name: str) -> list[ModelConfig]:
        """The models after ``name`` in its chain, each once (a chain's chains follow it)."""
        seen, chain, queue = {name}, [], list(self.model(name).fallbacks)
        while queue:
            step = queue.pop(0)
            if step in seen:
                continue
            seen.add(step)
            model = self.model(step)
            chain.append(model)
            queue.extend(model.fallbacks)
        return chain


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def load_catalog(path: Path) -> Catalog:
    try:
        with path.open("rb") as fh:
            # parse_float=Decimal: a price is the decimal written in the file, not a float.
            data = tomllib.load(fh, parse_float=Decimal)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"catalog {path}: {exc}") from exc
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"catalog {path}: {_describe(exc)}") from exc


@lru_cache
def get_catalog() -> Catalog:
    return load_catalog(get_settings().catalog_path)
