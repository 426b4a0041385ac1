"""the ledger, quick at size: rollups without the group, per day and per group, hourly peaks

``cost_rollups`` loses the job group from its key (tenant, hour, model, mode);
``cost_day_rollups`` keeps the same sums per UTC day, so a long range reads few rows;
``cost_group_rollups`` keeps them per hour, group and mode for the jobs in a group only.
``cost_peaks`` replaces ``cost_minutes``: per hour, tenant (or every tenant) and grouping
value, the completions in each minute (``m00`` .. ``m59``) and the busiest one. The new
rollups copy their columns from ``cost_rollups`` (``CREATE TABLE ... LIKE``) and are filled
from the rows there, so no list of columns is written twice; the peaks are rebuilt from the
cost records. Tenants get an optional baseline model (what "naive" is priced on).

Revision ID: 0012b_ledger_speed
Revises: 0017_frontdoor
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012b_ledger_speed"
down_revision: str | None = "0017_frontdoor"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NIL = "'00000000-0000-0000-0000-000000000000'::uuid"
OLD_KEY = ("tenant_id", "hour", "model", "mode", "group_id")


def _sums() -> list[str]:
    """The sum columns of cost_rollups as the database has them (everything but the key)."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'cost_rollups' ORDER BY ordinal_position"
        )
    )
    return [name for (name,) in rows if name not in OLD_KEY]


def _rollup(
    table: str, key: Sequence[tuple[str, str]], *, drop: Sequence[str], where: str = "true"
) -> None:
    """``table``: cost_rollups' columns but ``drop``, keyed on ``key`` (column, expression
    over the old rows), filled with the old rows' sums."""
    sums = _sums()
    op.execute(f"CREATE TABLE {table} (LIKE cost_rollups)")
    for column in drop:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    names = [name for name, _ in key]
    if "day" in names:
        op.execute(f"ALTER TABLE {table} RENAME COLUMN hour TO day")
    op.execute(
        f"INSERT INTO {table} ({', '.join(names + sums)}) "  # noqa: S608
        f"SELECT {', '.join(expression for _, expression in key)}, "
        f"{', '.join(f'sum({s})' for s in sums)} FROM cost_rollups WHERE {where} "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(key)))}"
    )
    op.create_primary_key(f"pk_{table}", table, names)
    op.create_foreign_key(
        f"fk_{table}_tenant_id_tenants", table, "tenants", ["tenant_id"], ["id"], ondelete="CASCADE"
    )


MINUTES = [f"m{i:02d}" for i in range(60)]
# The cost records' completions per tenant (and every tenant), grouping value, hour and minute.
PEAKS_FROM_RECORDS = (
    f"INSERT INTO cost_peaks (tenant_id, dimension, hour, key, {', '.join(MINUTES)}, peak) "  # noqa: S608
    f"SELECT *, greatest({', '.join(MINUTES)}) FROM (SELECT v.t, v.d, "
    "date_trunc('hour', ended_at, 'UTC'), v.k, "
    + ", ".join(f"count(*) FILTER (WHERE x.m = {i}) AS {m}" for i, m in enumerate(MINUTES))
    + " FROM cost_records, LATERAL (VALUES "  # noqa: S608
    "(tenant_id, 'all', ''), (tenant_id, 'model', coalesce(model, '')), "
    "(tenant_id, 'mode', coalesce(mode, '')), (tenant_id, 'group', group_id::text), "
    f"({NIL}, 'all', ''), ({NIL}, 'model', coalesce(model, '')), "
    f"({NIL}, 'mode', coalesce(mode, '')), ({NIL}, 'group', group_id::text)) AS v(t, d, k), "
    "LATERAL (SELECT extract(minute FROM ended_at AT TIME ZONE 'UTC')::int AS m) AS x "
    "WHERE state = 'completed' AND v.k IS NOT NULL GROUP BY 1, 2, 3, 4) AS c"
)


def upgrade() -> None:
    op.add_column("tenants", sa.Column("baseline_model", sa.String(200), nullable=True))
    day = "date_trunc('day', hour, 'UTC')"
    _rollup(
        "cost_day_rollups",
        [("tenant_id", "tenant_id"), ("day", day), ("model", "model"), ("mode", "mode")],
        drop=["group_id"],
    )
    op.create_index("ix_cost_day_rollups_day", "cost_day_rollups", ["day"])
    _rollup(
        "cost_group_rollups",
        [("tenant_id", "tenant_id"), ("hour", "hour"), ("group_id", "group_id"), ("mode", "mode")],
        drop=["model"],
        where=f"group_id <> {NIL}",
    )
    op.create_index("ix_cost_group_rollups_hour", "cost_group_rollups", ["hour"])
    _rollup(
        "cost_rollups_new",
        [("tenant_id", "tenant_id"), ("hour", "hour"), ("model", "model"), ("mode", "mode")],
        drop=["group_id"],
    )
    op.drop_table("cost_rollups")
    op.rename_table("cost_rollups_new", "cost_rollups")
    op.execute("ALTER TABLE cost_rollups RENAME CONSTRAINT pk_cost_rollups_new TO pk_cost_rollups")
    op.execute(
        "ALTER TABLE cost_rollups RENAME CONSTRAINT fk_cost_rollups_new_tenant_id_tenants "
        "TO fk_cost_rollups_tenant_id_tenants"
    )
    op.create_index("ix_cost_rollups_hour", "cost_rollups", ["hour"])

    op.create_table(
        "cost_peaks",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("dimension", sa.String(10), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("peak", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in MINUTES),
        sa.PrimaryKeyConstraint("tenant_id", "dimension", "hour", "key", name="pk_cost_peaks"),
    )
    op.execute(PEAKS_FROM_RECORDS)
    op.drop_table("cost_minutes")


def downgrade() -> None:
    # The group split of the hourly rollups is not restored: the jobs are summed in no group.
    op.create_table(
        "cost_minutes",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_cost_minutes_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "minute", name="pk_cost_minutes"),
    )
    op.create_index("ix_cost_minutes_minute", "cost_minutes", ["minute"])
    op.execute(
        "INSERT INTO cost_minutes SELECT tenant_id, date_trunc('minute', ended_at, 'UTC'), "
        "count(*) FROM cost_records WHERE state = 'completed' GROUP BY 1, 2"
    )
    op.drop_table("cost_peaks")
    op.drop_table("cost_group_rollups")
    op.drop_table("cost_day_rollups")
    op.add_column(
        "cost_rollups",
        sa.Column("group_id", sa.Uuid(), nullable=False, server_default=sa.text(NIL)),
    )
    op.alter_column("cost_rollups", "group_id", server_default=None)
    op.drop_constraint("pk_cost_rollups", "cost_rollups", type_="primary")
    op.create_primary_key("pk_cost_rollups", "cost_rollups", list(OLD_KEY))
    op.drop_column("tenants", "baseline_model")
