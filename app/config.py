"""Settings, read from the environment (prefix ``THRIFTY_``) and an optional ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CATALOG = Path(__file__).resolve().parent / "routing" / "catalog.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THRIFTY_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5433/thrifty"
    redis_url: str = "redis://127.0.0.1:6379/0"
    catalog_path: Path = DEFAULT_CATALOG
    # Where the embedded stack keeps its data, logs and pid files.
    home: Path = PROJECT_ROOT / ".thrifty"

    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_jobs_per_request: int = Field(default=10_000, gt=0)

    # Stage timing; beat drives the collector, poller and sweeper at these intervals.
    collect_interval_seconds: float = Field(default=1.0, gt=0)
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    sweep_interval_seconds: float = Field(default=30.0, gt=0)
    # A job or batch untouched this long in a non-terminal, pre-provider state is re-driven.
    stale_after_seconds: float = Field(default=60.0, gt=0)

    flower_user: str = "thrifty"
    flower_password: str = "thrifty"  # noqa: S105 - refused in production by the validator

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str) -> str:
        # Accept plain postgres:// URLs (as managed services hand them out) and pin psycopg 3.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.environment == "production" and self.flower_password == "thrifty":  # noqa: S105
            raise ValueError("set THRIFTY_FLOWER_PASSWORD: the default is for development only")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
