"""Scoped, revocable, rotatable API keys: the API, the CLI and the dev stack's one key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli import main as cli
from app.config import Settings, get_settings
from app.models import ApiKey, Tenant, utcnow
from app.stack.embedded import EmbeddedStack
from app.tenants import service as tenant_service
from app.tenants.scopes import Scope
from tests.conftest import operator_headers


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


JOB = {"prompt": "What is a scope?"}


def test_create_list_and_revoke_a_key(api: TestClient) -> None:
    created = api.post("/v1/keys", json={"name": "ci", "scopes": ["jobs:read"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith("thr_")
    assert body["name"] == "ci"
    assert body["scopes"] == ["jobs:read"]
    assert body["revoked_at"] is None

    listed = api.get("/v1/keys").json()
    assert body["id"] in [k["id"] for k in listed]
    assert all("key" not in k for k in listed)

    # The new key works for what its scope allows ...
    job = api.post("/v1/jobs", json=JOB).json()["jobs"][0]
    assert api.get(f"/v1/jobs/{job['id']}", headers=bearer(body["key"])).status_code == 200
    # ... and is refused at once after revocation.
    assert api.delete(f"/v1/keys/{body['id']}").status_code == 204
    refused = api.get(f"/v1/jobs/{job['id']}", headers=bearer(body["key"]))
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "unauthorized"
    revoked = {k["id"]: k for k in api.get("/v1/keys").json()}[body["id"]]
    assert revoked["revoked_at"] is not None


def test_a_key_without_the_scope_gets_403(api: TestClient) -> None:
    reader = api.post("/v1/keys", json={"name": "reader", "scopes": ["jobs:read"]}).json()["key"]
    job = api.post("/v1/jobs", json=JOB).json()["jobs"][0]
    headers = bearer(reader)
    submitted = api.post("/v1/jobs", json=JOB, headers=headers)
    assert submitted.status_code == 403
    assert submitted.json()["error"]["type"] == "forbidden"
    assert "jobs:write" in submitted.json()["error"]["message"]
    assert api.delete(f"/v1/jobs/{job['id']}", headers=headers).status_code == 403
    assert api.get("/v1/webhooks/endpoints", headers=headers).status_code == 403
    assert api.put("/v1/cache/settings", json={}, headers=headers).status_code == 403
    assert api.get("/v1/keys", headers=headers).status_code == 403
    assert api.get(f"/v1/jobs/{job['id']}", headers=headers).status_code == 200


def test_a_key_cannot_grant_more_than_it_has(api: TestClient) -> None:
    keys_only = api.post("/v1/keys", json={"name": "k", "scopes": ["keys:write"]}).json()["key"]
    escalate = api.post(
        "/v1/keys", json={"name": "x", "scopes": ["jobs:write"]}, headers=bearer(keys_only)
    )
    assert escalate.status_code == 403
    operator = api.post("/v1/keys", json={"name": "op", "scopes": ["operator"]})
    assert operator.status_code == 403
    unknown = api.post("/v1/keys", json={"name": "x", "scopes": ["jobs:delete"]})
    assert unknown.status_code == 422


def test_missing_and_unknown_keys_are_401(api: TestClient) -> None:
    with TestClient(api.app) as anonymous:
        assert anonymous.get("/v1/keys").status_code == 401
        assert anonymous.get("/v1/keys", headers=bearer("thr_nope")).status_code == 401


def test_rotation_keeps_the_old_key_for_the_grace_period(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    old = api.post("/v1/keys", json={"name": "svc", "scopes": ["jobs:read", "jobs:write"]}).json()
    rotated = api.post(f"/v1/keys/{old['id']}/rotate")
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["name"] == "svc"
    assert new["scopes"] == ["jobs:read", "jobs:write"]
    assert api.post("/v1/jobs", json=JOB, headers=bearer(new["key"])).status_code == 202
    # Within the grace period the old key still works, and now has an expiry.
    assert api.post("/v1/jobs", json=JOB, headers=bearer(old["key"])).status_code == 202
    listed = {k["id"]: k for k in api.get("/v1/keys").json()}
    assert listed[old["id"]]["expires_at"] is not None

    # Past it, refused.
    row = db.get(ApiKey, tenant_service.authenticate(db, key=old["key"]).key_id)  # type: ignore[union-attr]
    assert row is not None
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    assert api.post("/v1/jobs", json=JOB, headers=bearer(old["key"])).status_code == 401
    assert api.post(f"/v1/keys/{old['id']}/rotate").status_code == 409


def test_an_expired_key_is_refused(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    soon = (utcnow() + timedelta(hours=1)).isoformat()
    created = api.post("/v1/keys", json={"name": "t", "expires_at": soon}).json()
    assert api.get("/v1/keys", headers=bearer(created["key"])).status_code == 200
    db.execute(
        ApiKey.__table__.update()
        .where(ApiKey.id == created["id"])
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.commit()
    assert api.get("/v1/keys", headers=bearer(created["key"])).status_code == 401
    past = api.post("/v1/keys", json={"name": "t", "expires_at": "2020-01-01T00:00:00Z"})
    assert past.status_code == 422


def test_last_used_at_is_written_at_most_once_a_minute(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    def last_used() -> object:
        db.expire_all()
        key_hash = tenant_service.hash_key(tenant[1])
        return db.scalar(select(ApiKey.last_used_at).where(ApiKey.key_hash == key_hash))

    api.get("/v1/keys")
    first = last_used()
    assert first is not None
    api.get("/v1/keys")
    assert last_used() == first
    db.execute(
        ApiKey.__table__.update()
        .where(ApiKey.key_hash == tenant_service.hash_key(tenant[1]))
        .values(last_used_at=utcnow() - timedelta(minutes=2))
    )
    db.commit()
    api.get("/v1/keys")
    later = last_used()
    assert isinstance(later, type(first))
    assert later > first  # type: ignore[operator]


def test_the_public_api_serves_no_metrics(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    # Every tenant's counts and costs are on the operator metrics port (tests/ledger).
    assert api.get("/metrics", headers=operator_headers(db, tenant[0])).status_code == 404


def cli_lines(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    code = cli(argv)
    out = capsys.readouterr().out
    pairs = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and " " not in line)
    return code, pairs


def test_tenant_create_refuses_an_existing_name(
    db: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first = cli_lines(["tenant", "create", "beta"], capsys)
    assert code == 0
    assert first["tenant"] == "beta"
    assert first["api_key"].startswith("thr_")
    code, _ = cli_lines(["tenant", "create", "beta"], capsys)
    assert code == 1
    tenant = tenant_service.get_tenant(db, name="beta")
    assert tenant is not None
    assert len(tenant_service.list_keys(db, tenant_id=tenant.id)) == 1


def test_key_commands(db: Session, capsys: pytest.CaptureFixture[str]) -> None:
    cli_lines(["tenant", "create", "gamma"], capsys)
    code, made = cli_lines(
        ["key", "create", "--tenant", "gamma", "--name", "ops", "--scope", "operator"], capsys
    )
    assert code == 0
    assert made["scopes"] == "operator"
    principal = tenant_service.authenticate(db, key=made["api_key"])
    assert principal is not None
    assert principal.scopes == {Scope.operator}

    assert cli(["key", "list", "--tenant", "gamma"]) == 0
    listing = capsys.readouterr().out
    assert f"key_id={made['key_id']} name=ops" in listing
    assert "status=active" in listing

    code, revoked = cli_lines(["key", "revoke", made["key_id"], "--tenant", "gamma"], capsys)
    assert code == 0
    assert revoked["revoked_at"]
    assert tenant_service.authenticate(db, key=made["api_key"]) is None
    assert cli(["key", "list", "--tenant", "nobody"]) == 1
    assert cli(["key", "create", "--tenant", "gamma", "--scope", "jobs:delete"]) == 2


def test_commands_reach_the_database_on_thrifty_pg_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THRIFTY_DATABASE_URL")
    monkeypatch.setenv("THRIFTY_PG_PORT", "18999")
    assert ":18999/thrifty" in Settings().database_url
    monkeypatch.setenv("THRIFTY_DATABASE_URL", "postgresql://u@db:5432/x")
    assert Settings().database_url == "postgresql+psycopg://u@db:5432/x"


def test_the_dev_stack_keeps_one_key_across_restarts(db: Session, tmp_path: Path) -> None:
    stack = EmbeddedStack(get_settings().model_copy(update={"home": tmp_path}))
    stack.database_url = get_settings().database_url
    first = stack._dev_key()
    assert stack._dev_key() == first
    assert (tmp_path / "dev-api-key").read_text().strip() == first
    assert tenant_service.authenticate(db, key=first) is not None

    (tmp_path / "dev-api-key").unlink()
    second = stack._dev_key()
    assert second != first
    db.expire_all()
    assert tenant_service.authenticate(db, key=first) is None
    assert tenant_service.authenticate(db, key=second) is not None
