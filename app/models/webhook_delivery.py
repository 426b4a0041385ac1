from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, CreatedAtMixin, IdMixin, utcnow


class DeliveryState(enum.StrEnum):
    pending = "pending"  # an attempt is due at next_attempt_at
    succeeded = "succeeded"  # the receiver answered 2xx
    dead = "dead"  # dead-lettered: attempts exhausted, 410 Gone, or the endpoint disabled


class WebhookDelivery(IdMixin, CreatedAtMixin, Base):
    """One event for one receiver: the exact body, and when to try next.

    Postgres drives delivery: a beat task picks due rows (``FOR UPDATE SKIP LOCKED``) and the
    Celery message is only a hint, so a lost message never loses a delivery.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_tenant_created", "tenant_id", "created_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # NULL for a job's own webhook_url (signed with the tenant's secret).
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    group_id: Mapped[uuid.UUID | None]
    event: Mapped[str] = mapped_column(String(50))
    # event + subject + receiver: one delivery per event per receiver, however often emitted.
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    # The Standard Webhooks `webhook-id`, the same on every attempt.
    message_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[DeliveryState] = mapped_column(
        Enum(
            DeliveryState,
            name="webhook_delivery_state",
            values_callable=lambda e: [m.value for m in e],
        ),
        default=DeliveryState.pending,
    )
    # Attempts since the delivery was created or last redelivered; the retry budget.
    attempt_count: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    # When a hint was last sent; the dispatcher re-sends it once it is stale.
    enqueued_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
