"""HTTPS deliveries connect to the checked address yet verify the certificate for the name."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.kit.http import tls_context
from app.models import DeliveryState, Tenant
from tests.delivery.conftest import webhook_config
from tests.delivery.helpers import attempt, attempts, deliveries, finish
from tests.delivery.receiver import Receiver

CONFIG = webhook_config()


@pytest.fixture
def tls_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """An HTTPS receiver with a self-signed certificate for `localhost`, trusted by the sender."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls_context.cache_clear()
    with Receiver(tls=context) as receiver:
        yield receiver
    tls_context.cache_clear()


def test_https_keeps_the_name_for_sni_and_certificate_checks(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], tls_receiver: Receiver
) -> None:
    by_name = api.post("/v1/webhooks/endpoints", json={"url": tls_receiver.url(host="localhost")})
    by_address = api.post("/v1/webhooks/endpoints", json={"url": tls_receiver.url()})
    tls_receiver.secrets["/hook"] = [by_name.json()["secret"]]
    finish(db, tenant=tenant[0], config=CONFIG)
    named = next(d for d in deliveries(db) if "localhost" in d.url)
    addressed = next(d for d in deliveries(db) if "127.0.0.1" in d.url)

    # Connected to 127.0.0.1, but TLS was for `localhost`: the certificate matches.
    assert attempt(db, named, config=CONFIG) == DeliveryState.succeeded
    (got,) = tls_receiver.received()
    assert got.headers["host"] == f"localhost:{tls_receiver.port}"
    assert got.verified_with == tls_receiver.secrets["/hook"]
    assert attempts(db, named.id)[0].address == "127.0.0.1"

    # The same server by address: the certificate is not valid for it, so the attempt fails.
    assert attempt(db, addressed, config=CONFIG) == DeliveryState.pending
    (row,) = attempts(db, addressed.id)
    assert row.status_code is None
    assert "certificate is not valid for '127.0.0.1'" in str(row.error)
    assert len(tls_receiver.received()) == 1
    assert by_address.status_code == 201
