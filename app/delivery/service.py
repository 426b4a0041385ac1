"""What other domains call in delivery (webhooks); the rest is in its modules.

A delivery is a Postgres row holding the exact body and when to try next. Jobs that end
record their deliveries (``events``) in the transaction that ends them, and the Celery message
sent after commit is only a hint: beat's dispatcher picks every due delivery again with
``FOR UPDATE SKIP LOCKED``, so a lost message delays a delivery but never loses it
(``attempts``). Endpoints and secrets are ``subscriptions``; reading and redelivering,
``deliveries``.
"""

from __future__ import annotations

from app.delivery.attempts import deliver, dispatch_due
from app.delivery.config import WebhookConfig
from app.delivery.events import (
    GROUP_COMPLETED,
    GroupCompleted,
    JobEnded,
    Listeners,
    listeners,
    record,
)
from app.delivery.subscriptions import check_url

__all__ = [
    "GROUP_COMPLETED",
    "GroupCompleted",
    "JobEnded",
    "Listeners",
    "WebhookConfig",
    "check_url",
    "deliver",
    "dispatch_due",
    "listeners",
    "record",
]
