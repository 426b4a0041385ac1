"""The ledger's tables created by the 0012_ledger and 0012b_ledger_speed revisions match
the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.kit.db import get_engine
from app.models import Base
from tests.delivery.test_migration import _table_of

TABLES = {
    "cost_records",
    "cost_rollups",
    "cost_day_rollups",
    "cost_group_rollups",
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
