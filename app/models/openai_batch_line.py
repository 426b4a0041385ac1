from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class OpenAIBatchLine(Base):
    """One line of a batch's input file: its ``custom_id`` and the job it became, or why it
    was refused (``error_code``, ``error_message``)."""

    __tablename__ = "openai_batch_lines"

    batch_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("openai_batches.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(primary_key=True)
    custom_id: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[uuid.UUID | None]
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_param: Mapped[str | None] = mapped_column(Text)
