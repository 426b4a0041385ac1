from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin


class Tenant(IdMixin, CreatedAtMixin, Base):
    """A customer of the service; every job and cache entry belongs to one."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(200), unique=True)
