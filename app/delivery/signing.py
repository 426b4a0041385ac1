"""Standard Webhooks signatures (``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``),
made by the ``standardwebhooks`` reference library; secrets are generated here."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
# 32 random bytes: within the 24-64 bytes the specification recommends.
SECRET_BYTES = 32


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature_header(secrets_: list[str], *, message_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: one signature per valid secret, space-separated.

    The library signs with one secret per call; during a rotation both the new and the
    previous secret sign, so a receiver holding either verifies.
    """
    when = datetime.fromtimestamp(timestamp, UTC)
    return " ".join(
        Webhook(secret).sign(msg_id=message_id, timestamp=when, data=body) for secret in secrets_
    )
