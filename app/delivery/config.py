"""The delivery settings, as one value passed explicitly so each call can be given its own."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings, get_settings
from app.delivery import addresses


@dataclass(frozen=True)
class WebhookConfig:
    """How deliveries are attempted, retried, signed and linked (``THRIFTY_WEBHOOK_*``)."""

    timeout_seconds: float
    retry_schedule: tuple[float, ...]
    max_attempts: int
    jitter: float
    max_retry_after_seconds: float
    policy: addresses.Policy
    max_inline_result_bytes: int
    secret_grace_seconds: float
    public_base_url: str
    receiver_concurrency: int = 4
    # A hint older than this is stale (``THRIFTY_STALE_AFTER_SECONDS``): no longer counted as
    # one of a receiver's hints out, and sent again by the dispatcher.
    stale_after_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> WebhookConfig:
        settings = settings or get_settings()
        return cls(
            timeout_seconds=settings.webhook_timeout_seconds,
            retry_schedule=tuple(settings.webhook_retry_schedule),
            max_attempts=settings.webhook_max_attempts,
            jitter=settings.webhook_retry_jitter,
            max_retry_after_seconds=settings.webhook_max_retry_after_seconds,
            policy=addresses.Policy(
                allow_loopback=settings.webhook_allow_loopback,
                allow_private=settings.webhook_allow_private,
            ),
            max_inline_result_bytes=settings.webhook_max_inline_result_bytes,
            secret_grace_seconds=settings.webhook_secret_grace_seconds,
            public_base_url=settings.public_base_url.rstrip("/"),
            receiver_concurrency=settings.webhook_receiver_concurrency,
            stale_after_seconds=settings.stale_after_seconds,
        )
