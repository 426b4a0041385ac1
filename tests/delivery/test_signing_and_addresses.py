"""Signatures checked by the `standardwebhooks` package; the SSRF address policy."""

from __future__ import annotations

import ipaddress
import random
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app.delivery import addresses, signing
from app.delivery.addresses import Policy, RefusedURL
from app.delivery.attempts import retry_delay
from app.kit.http import parse_retry_after
from tests.delivery.conftest import webhook_config


def test_signatures_verify_with_the_reference_implementation() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    assert new.startswith("whsec_")
    assert new != old
    body = '{"type":"job.completed","data":{"id":"1"}}'
    stamp = int(time.time())
    header = signing.signature_header([new, old], message_id="msg_1", timestamp=stamp, body=body)
    assert len(header.split(" ")) == 2
    assert all(s.startswith("v1,") for s in header.split(" "))
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp), "webhook-signature": header}
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {
            "type": "job.completed",
            "data": {"id": "1"},
        }
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("1", "2"), headers)


@pytest.mark.parametrize(
    ("address", "allowed_by"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fc00::1", "private"),
        ("169.254.1.1", "private"),
        ("fe80::1", "private"),
        ("169.254.169.254", None),
        ("fd00:ec2::254", None),
        ("::ffff:169.254.169.254", None),
        ("100.100.100.200", None),
        ("0.0.0.0", None),
        ("224.0.0.1", None),
    ],
)
def test_internal_addresses_are_refused_unless_configured(
    address: str, allowed_by: str | None
) -> None:
    ip = ipaddress.ip_address(address)
    assert addresses.refusal(ip, Policy()) is not None
    assert (addresses.refusal(ip, Policy(allow_loopback=True)) is None) == (
        allowed_by == "loopback"
    )
    assert (addresses.refusal(ip, Policy(allow_private=True)) is None) == (allowed_by is not None)


def test_public_addresses_are_allowed() -> None:
    for address in ("93.184.215.14", "8.8.8.8", "2606:4700::1111"):
        assert addresses.refusal(ipaddress.ip_address(address), Policy()) is None


def test_names_are_checked_on_what_they_resolve_to() -> None:
    with pytest.raises(RefusedURL, match="loopback"):
        addresses.check("http://localhost:9/hook", Policy())
    target = addresses.check("http://localhost:9/hook?a=1", Policy(allow_loopback=True))
    assert target.host_header == "localhost:9"
    assert ipaddress.ip_address("127.0.0.1") in target.addresses
    assert target.pinned_url(ipaddress.ip_address("127.0.0.1")) == "http://127.0.0.1:9/hook?a=1"
    with pytest.raises(RefusedURL, match="metadata"):
        addresses.check("http://169.254.169.254/latest/meta-data/", Policy(allow_private=True))
    with pytest.raises(RefusedURL, match="http and https"):
        addresses.check("file:///etc/passwd", Policy(allow_private=True))
    with pytest.raises(RefusedURL, match="does not resolve"):
        addresses.check("http://no-such-host.invalid/hook", Policy())


def test_retry_delays_follow_the_schedule_within_the_jitter() -> None:
    config = webhook_config(retry_schedule=(0, 5, 300, 1800), jitter=0.2)
    rng = random.Random(7)
    for attempts_made, base in [(1, 5), (2, 300), (3, 1800), (4, 1800), (9, 1800)]:
        delays = [retry_delay(attempts_made, config, rng) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert len(set(delays)) > 100  # jittered, not constant
    assert retry_delay(1, webhook_config(retry_schedule=(0, 5), jitter=0.0)) == 5


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120
    assert parse_retry_after("Sat, 28 Nov 2026 12:01:00 GMT", now=now) == 60
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None
