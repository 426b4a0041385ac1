"""The model catalog: providers, models with prices and window settings, routing rules."""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.config import get_settings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    kind: Literal["openai_batch"]
    base_url: str
    base_url_env: str | None = None
    api_key_env: str | None = None
    completion_window: str = "24h"

    def resolved_base_url(self) -> str:
        if self.base_url_env and os.environ.get(self.base_url_env):
            return os.environ[self.base_url_env]
        return self.base_url

    def api_key(self) -> str:
        # The simulator accepts any key; real providers need the variable set.
        if self.api_key_env and os.environ.get(self.api_key_env):
            return os.environ[self.api_key_env]
        return "thrifty-simulator"


class ModelConfig(_Strict):
    name: str
    provider: str
    tier: str
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    batch_discount: float = Field(default=0.5, ge=0, lt=1)
    context_tokens: int = Field(gt=0)
    max_size: int = Field(default=1000, gt=0, le=50_000)
    max_wait_seconds: float = Field(default=10, gt=0)


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
        return Catalog.model_validate(tomllib.load(fh))


@lru_cache
def get_catalog() -> Catalog:
    return load_catalog(get_settings().catalog_path)
