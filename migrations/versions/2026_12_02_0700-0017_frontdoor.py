"""chat conversations as jobs: the turns between the system prompt and the last user message

A job sent as ``messages`` (the OpenAI-compatible front door, or ``POST /v1/jobs``) keeps its
leading system messages in ``system``, its last user message in ``prompt`` and the turns in
between in ``history`` (JSONB, ``[{"role": ..., "content": ...}]``).

Revision ID: 0017_frontdoor
Revises: 0012_ledger
Create Date: 2026-12-02 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017_frontdoor"
down_revision: str | None = "0012_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("history", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "history")
