"""semantic cache: embeddings on cache entries (HNSW), job embeddings, tenant cache settings,
job cache controls

Revision ID: 0003_semantic_cache
Revises: 0002_collector
Create Date: 2026-11-27 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

revision: str = "0003_semantic_cache"
down_revision: str | None = "0002_collector"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.add_column("cache_entries", sa.Column("scope_key", sa.String(length=64), nullable=True))
    op.add_column("cache_entries", sa.Column("kind", sa.String(length=10), nullable=True))
    op.add_column("cache_entries", sa.Column("request_text", sa.Text(), nullable=True))
    op.add_column("cache_entries", sa.Column("embedding", Vector(384), nullable=True))
    op.add_column(
        "cache_entries", sa.Column("last_hit_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_cache_entries_tenant_scope", "cache_entries", ["tenant_id", "scope_key"], unique=False
    )
    # Building an HNSW index needs more than the default 64 MB of maintenance memory.
    op.execute("SET LOCAL maintenance_work_mem = '512MB'")
    op.create_index(
        "ix_cache_entries_embedding",
        "cache_entries",
        ["embedding"],
        unique=False,
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 200},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_table(
        "cache_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("semantic_enabled", sa.Boolean(), nullable=False),
        sa.Column("prompt_threshold", sa.Float(), nullable=True),
        sa.Column("document_threshold", sa.Float(), nullable=True),
        sa.Column("ttl_seconds", sa.Integer(), nullable=True),
        sa.Column("max_entries", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_cache_settings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_cache_settings")),
    )
    op.create_table(
        "job_embeddings",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("scope_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("embedding", Vector(384), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_embeddings_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_embeddings")),
    )
    op.add_column("jobs", sa.Column("temperature", sa.Float(), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("cache_mode", sa.String(length=10), nullable=False, server_default="default"),
    )
    op.add_column("jobs", sa.Column("semantic_cache", sa.Boolean(), nullable=True))
    op.add_column("jobs", sa.Column("cache_similarity", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "cache_similarity")
    op.drop_column("jobs", "semantic_cache")
    op.drop_column("jobs", "cache_mode")
    op.drop_column("jobs", "temperature")
    op.drop_table("job_embeddings")
    op.drop_table("cache_settings")
    op.drop_index(
        "ix_cache_entries_embedding",
        table_name="cache_entries",
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 200},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.drop_index("ix_cache_entries_tenant_scope", table_name="cache_entries")
    op.drop_column("cache_entries", "last_hit_at")
    op.drop_column("cache_entries", "embedding")
    op.drop_column("cache_entries", "request_text")
    op.drop_column("cache_entries", "kind")
    op.drop_column("cache_entries", "scope_key")
