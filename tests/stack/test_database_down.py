"""While Postgres is down the API answers 503 with `Retry-After` in the one error schema (and
`/healthz` 503), and it recovers by itself once Postgres is back."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.stack.postgres import EmbeddedPostgres
from tests.batching.helpers import eventually
from tests.conftest import PG_PORT, TEST_HOME
from tests.jobs.test_submit import assert_error


def test_postgres_down_is_503_with_retry_after_and_the_api_recovers(
    api: TestClient, db: Session
) -> None:
    db.close()
    postgres = EmbeddedPostgres(TEST_HOME / "pgdata", PG_PORT)
    postgres.stop()
    try:
        read = api.get(f"/v1/jobs/{uuid.uuid4()}")
        assert "database" in assert_error(read, 503, "service_unavailable")
        assert read.headers["Retry-After"] == "5"
        assert read.json()["error"]["details"] == [{"retry_after": 5}]
        submit = api.post("/v1/jobs", json={"prompt": "x"})
        assert_error(submit, 503, "service_unavailable")
        health = api.get("/healthz")
        assert health.status_code == 503
        assert health.headers["Retry-After"] == "5"
        assert health.json()["database"].startswith("error")
    finally:
        postgres.start()
    eventually(lambda: api.get("/healthz").status_code == 200, timeout=60, what="healthz")
    assert api.post("/v1/jobs", json={"prompt": "x"}).status_code == 202
