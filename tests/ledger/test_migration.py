"""The ledger's tables created by the 0012_ledger and 0012b_ledger_speed revisions match
the models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from app.kit.db import get_engine
from app.models import NO_GROUP, Base
from tests.delivery.test_migration import _table_of
from tests.stack.test_migrations import alembic_config, engine, scratch_url

__all__ = ["engine", "scratch_url"]  # the scratch database's fixtures

TABLES = {
    "cost_records",
    "cost_rollups",
    "cost_day_rollups",
    "cost_group_rollups",
    "cost_group_totals",
    "cost_peaks",
    "jobs",
    "tenants",
}


def test_models_and_migration_agree(database: str) -> None:
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = compare_metadata(context, Base.metadata)
    ours = [d for d in diffs if _table_of(d) in TABLES]
    assert ours == []


def test_the_speed_revision_keeps_what_the_rollups_summed(scratch_url: str, engine: Engine) -> None:
    """0012b re-keys the hourly rollups without the group and fills the daily and group ones
    from them, and the peaks from the records: nothing recorded before is lost."""
    config = alembic_config(scratch_url)
    command.upgrade(config, "0017_frontdoor")
    hour = datetime(2026, 11, 30, 10, tzinfo=UTC)
    tenant, group = uuid.uuid4(), uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO tenants (id, name, created_at) VALUES (:t, 'm', now())"),
                     {"t": tenant})  # fmt: skip
        names = list(
            conn.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'cost_rollups' ORDER BY ordinal_position"
                )
            )
        )
        # Two groups (one of them none) of the same hour, model and mode; one the next hour.
        for group_id, at, completed, cost in (
            (group, hour, 3, "0.3"),
            (NO_GROUP, hour, 2, "0.2"),
            (group, hour + timedelta(hours=1), 1, "0.1"),
        ):
            values: dict[str, object] = {name: 0 for name in names}
            values.update(tenant_id=tenant, hour=at, model="gpt-4o-mini", mode="batch")
            values.update(group_id=group_id, completed=completed, cost_usd=Decimal(cost))
            conn.execute(
                text(f"INSERT INTO cost_rollups ({', '.join(names)}) "  # noqa: S608
                     f"VALUES ({', '.join(':' + n for n in names)})"),
                values,
            )  # fmt: skip
        for i in range(4):
            conn.execute(
                text(
                    "INSERT INTO cost_records (job_id, tenant_id, group_id, state, model, mode, "
                    "input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, "
                    "naive_usd, routed_usd, batched_usd, prompt_cached_usd, actual_usd, "
                    "saved_cache_usd, saved_coalescing_usd, saved_routing_usd, "
                    "saved_batching_usd, saved_prompt_cache_usd, created_at, ended_at) VALUES "
                    "(gen_random_uuid(), :t, :g, 'completed', 'gpt-4o-mini', 'batch', "
                    "1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, :at, :at)"
                ),
                {"t": tenant, "g": group if i else None, "at": hour + timedelta(minutes=7)},
            )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        hours = conn.execute(
            text("SELECT hour, completed, cost_usd FROM cost_rollups ORDER BY hour")
        ).all()
        assert [(h, n, c) for h, n, c in hours] == [
            (hour, 5, Decimal("0.5")),
            (hour + timedelta(hours=1), 1, Decimal("0.1")),
        ]
        days = conn.execute(text("SELECT day, completed, cost_usd FROM cost_day_rollups")).all()
        assert [tuple(d) for d in days] == [(hour.replace(hour=0), 6, Decimal("0.6"))]
        groups = conn.execute(
            text("SELECT group_id, sum(completed) FROM cost_group_rollups GROUP BY 1")
        ).all()
        assert [tuple(g) for g in groups] == [(group, 4)]
        peaks = dict(
            conn.execute(
                text(
                    "SELECT dimension || ':' || key, peak FROM cost_peaks "
                    "WHERE tenant_id = :t AND m07 = peak"
                ),
                {"t": tenant},
            ).all()
        )
        assert peaks == {"all:": 4, "model:gpt-4o-mini": 4, "mode:batch": 4, f"group:{group}": 3}


def test_the_stats_revision_fills_the_all_time_group_rollup(
    scratch_url: str, engine: Engine
) -> None:
    """0022 builds cost_group_totals from the hourly group rollup and the records' end times:
    the same rows the writer keeps as jobs end."""
    from sqlalchemy.orm import Session

    from app.ledger import service as ledger_service
    from app.models import JobMode, Tenant
    from tests.ledger.test_stats import ended

    config = alembic_config(scratch_url)
    command.upgrade(config, "head")
    hour = datetime(2026, 11, 30, 10, 17, tzinfo=UTC)
    groups = [uuid.uuid4(), uuid.uuid4()]
    with Session(engine) as session:
        tenant = Tenant(name="m")
        session.add(tenant)
        session.flush()
        jobs = [
            ended(tenant, at=hour + timedelta(minutes=37 * i), latency=1 + i,
                  mode=JobMode.realtime if i % 3 else JobMode.batch,
                  group_id=groups[i % 2] if i % 5 else None)
            for i in range(40)
        ]  # fmt: skip
        ledger_service.record(session, jobs)
        session.commit()
    read = "SELECT * FROM cost_group_totals ORDER BY group_id, mode"
    with engine.connect() as conn:
        written = [tuple(row) for row in conn.execute(text(read))]
    assert len(written) == 4
    command.downgrade(config, "0022_stats-1")
    command.upgrade(config, "head")
    with engine.connect() as conn:
        filled = [tuple(row) for row in conn.execute(text(read))]
    assert filled == written
