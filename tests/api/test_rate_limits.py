"""Per-tenant limits in Redis: requests and jobs a minute, unfinished jobs; 429 + Retry-After."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.cli import main as cli
from app.config import get_settings
from app.kit.ratelimit import RateLimiter
from app.models import Tenant
from tests.conftest import make_tenant


def assert_429(response: object, type_: str = "rate_limited") -> int:
    assert response.status_code == 429, response.text  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["type"] == type_
    retry_after = int(response.headers["retry-after"])  # type: ignore[attr-defined]
    assert 1 <= retry_after <= 60
    assert error["details"] == [{"retry_after": retry_after}]
    return retry_after


def test_a_burst_over_the_request_limit_is_429(
    api: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "tenant_requests_per_minute", 5)
    answers = [api.get("/v1/keys").status_code for _ in range(5)]
    assert answers == [200] * 5
    assert_429(api.get("/v1/keys"))
    assert_429(api.post("/v1/jobs", json={"prompt": "x"}))

    # Another tenant is not slowed by the first one's burst.
    _, other = make_tenant(db, name="other")
    assert api.get("/v1/keys", headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_jobs_are_weighted_by_list_length(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "tenant_jobs_per_minute", 10)
    assert api.post("/v1/jobs", json=[{"prompt": f"q{i}"} for i in range(6)]).status_code == 202
    assert_429(api.post("/v1/jobs", json=[{"prompt": f"r{i}"} for i in range(5)]))
    assert api.post("/v1/jobs", json=[{"prompt": f"s{i}"} for i in range(4)]).status_code == 202
    assert_429(api.post("/v1/jobs", json={"prompt": "one more"}))
    # A list that could never fit is not something to retry.
    too_long = api.post("/v1/jobs", json=[{"prompt": f"t{i}"} for i in range(11)])
    assert too_long.status_code == 422


def test_per_tenant_overrides(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["tenant", "limits", "acme", "--requests-per-minute", "3"]) == 0
    assert "requests_per_minute=3" in capsys.readouterr().out
    assert [api.get("/v1/keys").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert cli(["tenant", "limits", "nobody"]) == 1


def test_unfinished_jobs_are_capped(
    api: TestClient, db: Session, tenant: tuple[Tenant, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "tenant_max_unfinished_jobs", 3)
    first = api.post("/v1/jobs", json=[{"prompt": "a"}, {"prompt": "b"}])
    assert first.status_code == 202
    assert_429(api.post("/v1/jobs", json=[{"prompt": "c"}, {"prompt": "d"}]),
               "too_many_unfinished_jobs")  # fmt: skip
    assert api.post("/v1/jobs", json={"prompt": "c"}).status_code == 202
    # Once jobs end there is room again.
    for job in first.json()["jobs"]:
        assert api.delete(f"/v1/jobs/{job['id']}").status_code == 200
    assert api.post("/v1/jobs", json=[{"prompt": "e"}, {"prompt": "f"}]).status_code == 202


def test_limits_are_shared_by_every_process(broker: str) -> None:
    # Two limiters (two API processes) on one Redis count together.
    one, two = RateLimiter(broker), RateLimiter(broker)
    one.hit("requests", "shared-tenant", per_minute=2)
    two.hit("requests", "shared-tenant", per_minute=2)
    with pytest.raises(Exception, match="rate limit") as caught:
        one.hit("requests", "shared-tenant", per_minute=2)
    assert caught.value.retry_after >= 1  # type: ignore[attr-defined]


def test_without_redis_requests_go_through() -> None:
    down = RateLimiter("redis://127.0.0.1:1/0")
    for _ in range(3):
        down.hit("requests", "t", per_minute=1)


def test_openai_batch_lines_count_as_jobs(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "tenant_jobs_per_minute", 5)
    line = (
        '{"custom_id": "%d", "method": "POST", "url": "/v1/chat/completions", '
        '"body": {"model": "auto", "messages": [{"role": "user", "content": "q%d"}]}}\n'
    )
    content = "".join(line % (i, i) for i in range(3)).encode()
    upload = api.post("/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"})
    assert upload.status_code == 200, upload.text
    batch = {"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
             "completion_window": "24h"}  # fmt: skip
    assert api.post("/v1/batches", json=batch).status_code == 200
    # Three lines spent of five: the same file again is over the tenant's jobs a minute.
    assert_429(api.post("/v1/batches", json=batch))
    assert_429(api.post("/v1/jobs", json=[{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}]))
