from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from app.delivery.addresses import Policy
from app.delivery.service import WebhookConfig
from tests.delivery.receiver import Receiver, serve


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve()


def webhook_config(**overrides: Any) -> WebhookConfig:
    """The configured delivery settings with a short schedule and the receiver allowed."""
    base = dataclasses.replace(
        WebhookConfig.from_settings(),
        retry_schedule=(0, 2, 4),
        max_attempts=4,
        jitter=0.2,
        timeout_seconds=5,
        policy=Policy(allow_loopback=True),
    )
    return dataclasses.replace(base, **overrides)
