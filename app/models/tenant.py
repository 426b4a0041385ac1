from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class Tenant(IdMixin, CreatedAtMixin, Base):
    """A customer of the service; every job and cache entry belongs to one."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Per-tenant overrides of THRIFTY_TENANT_REQUESTS_PER_MINUTE, _JOBS_PER_MINUTE and
    # _MAX_UNFINISHED_JOBS; NULL means the setting.
    requests_per_minute: Mapped[int | None]
    jobs_per_minute: Mapped[int | None]
    max_unfinished_jobs: Mapped[int | None]
    # Weight in the weighted fair share of a window's claims (2 gets twice the share of 1).
    share_weight: Mapped[int] = mapped_column(default=1, server_default="1")
    # What a job's naive cost is priced on (a catalog model); NULL means the catalog's
    # naive_model.
    baseline_model: Mapped[str | None] = mapped_column(String(200))
    # How its jobs are routed: ``rules`` or ``learned`` (app/routing/strategies.py); NULL
    # means the default, ``rules``.
    routing_strategy: Mapped[str | None] = mapped_column(String(20))
    # The fraction of the strong model's quality the learned router keeps; NULL: 0.95.
    quality_target: Mapped[float | None]
    # Budgets in USD over the ledger's actual costs, per UTC day and month (NULL: none),
    # and what happens past one: ``reject`` (NULL) or ``downgrade`` (app/routing/budgets.py).
    daily_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(24, 12))
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(24, 12))
    budget_policy: Mapped[str | None] = mapped_column(String(20))
