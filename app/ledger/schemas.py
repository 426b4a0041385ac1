"""The public shape of ``GET /v1/stats``. Money is a decimal string (12 places)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.kit.money import Money

GroupBy = Literal["model", "mode", "day", "hour", "group"]


class SavingsByLayer(BaseModel):
    """What each layer saved, in USD; the five add up to naive minus actual cost."""

    cache: Money = Field(description="Answers from Thrifty's cache: their routed, batched cost.")
    coalescing: Money = Field(description="Identical requests answered once (zero for now).")
    routing: Money = Field(description="The routed model's list price below the baseline's.")
    batching: Money = Field(description="Batch API discounts.")
    prompt_cache: Money = Field(description="The provider's cached-input prices.")


class Percentiles(BaseModel):
    """Latency per request (LPR), submission to result available, of completed jobs, in
    seconds; estimated from fixed histogram buckets (see ``lpr_resolution``)."""

    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None = None


class CacheHitRate(BaseModel):
    """Shares of completed jobs answered from the cache."""

    total: float | None
    exact: float | None
    semantic: float | None


class Deadlines(BaseModel):
    jobs: int = Field(description="Ended jobs (not cancelled) that had a deadline.")
    met: int = Field(description="Of those, completed by their deadline.")
    met_rate: float | None


class Tokens(BaseModel):
    input: int
    cached_input: int
    cache_write: int
    output: int


class StatsBlock(BaseModel):
    jobs: dict[str, int] = Field(description="Jobs that ended in the range, by state.")
    cost_usd: Money = Field(description="What the completed jobs cost.")
    naive_cost_usd: Money = Field(description="What they would have cost naively.")
    saved_usd: Money = Field(description="naive_cost_usd - cost_usd.")
    cpr_usd: Money | None = Field(description="Mean actual cost per completed job.")
    naive_cpr_usd: Money | None = Field(description="Mean naive cost per completed job.")
    savings_usd: SavingsByLayer
    lpr_seconds: Percentiles
    lpr_seconds_by_mode: dict[str, Percentiles]
    deadlines: Deadlines
    throughput_jobs_per_s: float = Field(description="Completed jobs per second over the range.")
    peak_minute_jobs_per_s: float | None = Field(
        description="Completed jobs per second in the busiest minute (None per model, mode or "
        "group: minutes are counted per tenant)."
    )
    cache_hit_rate: CacheHitRate
    tokens: Tokens


class StatsGroup(StatsBlock):
    key: str = Field(
        description="The group_by value: a model, a mode, an ISO hour or day, or a group id."
    )


class StatsOut(StatsBlock):
    since: datetime
    until: datetime
    group_by: GroupBy | None
    lpr_resolution: str = Field(description="How precise the latency percentiles are.")
    groups: list[StatsGroup]
