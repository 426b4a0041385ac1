"""the OpenAI-compatible front door: files, batches and their lines

``openai_files`` are uploaded batch inputs and the batches' output and error files, their
bytes in ``openai_file_parts`` (about a MiB each, ending on a line boundary). An
``openai_batches`` row is one batch of the Batch API; ``openai_batch_lines`` maps each line
of its input file to the job it became, or to why it was refused.

Revision ID: 0017_frontdoor_api
Revises: 0012b_ledger_speed
Create Date: 2026-12-02 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017_frontdoor_api"
down_revision: str | None = "0012b_ledger_speed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def _tenant() -> sa.Column[sa.Uuid]:
    return sa.Column(
        "tenant_id",
        sa.Uuid(),
        sa.ForeignKey("tenants.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "openai_files",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("filename", sa.String(1000), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
    )
    op.create_index(
        "ix_openai_files_tenant_created", "openai_files", ["tenant_id", "created_at", "id"]
    )
    op.create_table(
        "openai_file_parts",
        sa.Column(
            "file_id",
            sa.Uuid(),
            sa.ForeignKey("openai_files.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "openai_batches",
        sa.Column("id", sa.Uuid(), primary_key=True),
        _tenant(),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("completion_window", sa.String(20), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), nullable=True),
        sa.Column("input_file_id", sa.Uuid(), nullable=False),
        sa.Column("output_file_id", sa.Uuid(), nullable=True),
        sa.Column("error_file_id", sa.Uuid(), nullable=True),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("errors", postgresql.JSONB(), nullable=True),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("completed_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        *(
            sa.Column(f"{name}_at", WHEN, nullable=True)
            for name in (
                "in_progress",
                "finalizing",
                "completed",
                "failed",
                "expired",
                "cancelling",
                "cancelled",
                "redriven",
            )
        ),
    )
    op.create_index(
        "ix_openai_batches_tenant_created", "openai_batches", ["tenant_id", "created_at", "id"]
    )
    op.create_table(
        "openai_batch_lines",
        sa.Column(
            "batch_id",
            sa.Uuid(),
            sa.ForeignKey("openai_batches.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("line", sa.Integer(), primary_key=True),
        sa.Column("custom_id", sa.Text(), nullable=True),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("error_code", sa.String(100), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_param", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("openai_batch_lines")
    op.drop_table("openai_batches")
    op.drop_table("openai_file_parts")
    op.drop_table("openai_files")
