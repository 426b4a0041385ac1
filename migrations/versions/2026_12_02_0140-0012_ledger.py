"""the cost ledger: immutable cost records, hourly rollups, per-minute completions

``cost_records`` holds one row per ended job, written in the transaction that ends it and
never updated (a trigger refuses UPDATE). ``cost_rollups`` sums them per tenant, hour, model,
mode and group (with a latency histogram, app/ledger/histogram.py), ``cost_minutes`` counts
completions per tenant and minute; both are added to by the same statement that writes the
records. Jobs get the prompt-cache token counts, and their costs the ledger's 12 decimals.

Revision ID: 0012_ledger
Revises: 0014_cache_speed
Create Date: 2026-12-02 01:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_ledger"
down_revision: str | None = "0014_cache_speed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(24, 12)
LATENCY_BUCKETS = 75


def upgrade() -> None:
    op.add_column("jobs", sa.Column("cached_input_tokens", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("cache_write_tokens", sa.Integer(), nullable=True))
    op.alter_column("jobs", "cost_usd", type_=MONEY, existing_type=sa.Numeric(18, 8))
    op.alter_column("jobs", "naive_cost_usd", type_=MONEY, existing_type=sa.Numeric(18, 8))

    op.create_table(
        "cost_records",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("provider", sa.String(50), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("mode", sa.String(20), nullable=True),
        sa.Column("answered_by", sa.String(20), nullable=True),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "input_tokens",
                "cached_input_tokens",
                "cache_write_tokens",
                "output_tokens",
            )
        ),
        *(
            sa.Column(name, MONEY, nullable=False)
            for name in (
                "naive_usd",
                "routed_usd",
                "batched_usd",
                "prompt_cached_usd",
                "actual_usd",
                "saved_cache_usd",
                "saved_coalescing_usd",
                "saved_routing_usd",
                "saved_batching_usd",
                "saved_prompt_cache_usd",
            )
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("latency_seconds", sa.Float(), nullable=True),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_cost_records_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", name="pk_cost_records"),
    )
    op.create_index("ix_cost_records_tenant_ended_at", "cost_records", ["tenant_id", "ended_at"])
    op.create_index("ix_cost_records_ended_at", "cost_records", ["ended_at"])
    op.execute(
        "CREATE FUNCTION cost_records_immutable() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'cost records are immutable'; END $$"
    )
    op.execute(
        "CREATE TRIGGER cost_records_immutable BEFORE UPDATE ON cost_records "
        "FOR EACH ROW EXECUTE FUNCTION cost_records_immutable()"
    )

    op.create_table(
        "cost_rollups",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "completed",
                "failed",
                "cancelled",
                "cache_exact",
                "cache_semantic",
                "input_tokens",
                "cached_input_tokens",
                "cache_write_tokens",
                "output_tokens",
            )
        ),
        *(
            sa.Column(name, MONEY, nullable=False)
            for name in (
                "cost_usd",
                "naive_cost_usd",
                "saved_cache_usd",
                "saved_coalescing_usd",
                "saved_routing_usd",
                "saved_batching_usd",
                "saved_prompt_cache_usd",
            )
        ),
        sa.Column("latency_sum_seconds", sa.Float(), nullable=False),
        sa.Column("deadline_jobs", sa.BigInteger(), nullable=False),
        sa.Column("deadline_met", sa.BigInteger(), nullable=False),
        *(
            sa.Column(f"lpr_{i:02d}", sa.BigInteger(), nullable=False)
            for i in range(LATENCY_BUCKETS)
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_cost_rollups_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "hour", "model", "mode", "group_id", name="pk_cost_rollups"
        ),
    )
    # Every tenant's hours (the operator's view of all tenants).
    op.create_index("ix_cost_rollups_hour", "cost_rollups", ["hour"])
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


def downgrade() -> None:
    op.drop_table("cost_minutes")
    op.drop_table("cost_rollups")
    op.drop_table("cost_records")
    op.execute("DROP FUNCTION cost_records_immutable()")
    op.alter_column("jobs", "naive_cost_usd", type_=sa.Numeric(18, 8), existing_type=MONEY)
    op.alter_column("jobs", "cost_usd", type_=sa.Numeric(18, 8), existing_type=MONEY)
    op.drop_column("jobs", "cache_write_tokens")
    op.drop_column("jobs", "cached_input_tokens")
