"""The model catalog: providers, models with prices and window settings, routing rules."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.config import Settings, get_settings


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
    batch_discount: Decimal = Field(default=Decimal("0.5"), ge=0, lt=1)
    context_tokens: int = Field(gt=0)
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


class Rule(_Strict):
    name: str
    tier: str
    instruction_in: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    min_tokens: int | None = None


class Catalog(_Strict):
    naive_model: str
    default_tier: str
    providers: dict[str, ProviderConfig]
    models: list[ModelConfig] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalog:
        names = {m.name for m in self.models}
        tiers = {m.tier for m in self.models}
        if len(names) != len(self.models):
            raise ValueError("model names must be unique")
        for model in self.models:
            if model.provider not in self.providers:
                raise ValueError(f"model {model.name} names unknown provider {model.provider}")
        if self.naive_model not in names:
            raise ValueError(f"naive_model {self.naive_model} is not in the catalog")
        for tier in [self.default_tier, *(r.tier for r in self.rules)]:
            if tier not in tiers:
                raise ValueError(f"tier {tier} has no model")
        return self

    @property
    def tiers(self) -> set[str]:
        return {m.tier for m in self.models}

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def has_model(self, name: str) -> bool:
        return any(m.name == name for m in self.models)


def load_catalog(path: Path) -> Catalog:
    with path.open("rb") as fh:
        # parse_float=Decimal: a price is the decimal written in the file, not a binary float.
        return Catalog.model_validate(tomllib.load(fh, parse_float=Decimal))


@lru_cache
def get_catalog() -> Catalog:
    return load_catalog(get_settings().catalog_path)
