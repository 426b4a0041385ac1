from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class OpenAIFilePart(Base):
    """A file's bytes, in parts of about a MiB that end on a line boundary, in ``seq`` order."""

    __tablename__ = "openai_file_parts"

    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("openai_files.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
