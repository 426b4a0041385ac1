"""The endpoint and secret API, and SSRF refusals when a URL is registered or submitted."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.models import Job, Tenant, WebhookEndpoint
from tests.conftest import make_tenant
from tests.delivery.conftest import webhook_config
from tests.delivery.helpers import finish
from tests.jobs.test_submit import assert_error


@pytest.fixture
def no_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production default: loopback receivers are refused."""
    monkeypatch.setattr(get_settings(), "webhook_allow_loopback", False)


def test_endpoint_crud_and_the_secret_is_shown_once(api: TestClient, db: Session) -> None:
    response = api.post(
        "/v1/webhooks/endpoints",
        json={"url": "http://127.0.0.1:9/hook", "events": ["job.failed", "group.completed"]},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["group.completed", "job.failed"]
    endpoint_id = created["id"]

    listed = api.get("/v1/webhooks/endpoints").json()
    assert [e["id"] for e in listed] == [endpoint_id]
    assert "secret" not in listed[0]
    one = api.get(f"/v1/webhooks/endpoints/{endpoint_id}").json()
    assert "secret" not in one
    assert one["url"] == "http://127.0.0.1:9/hook"

    # All events by default.
    other = api.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/other"}).json()
    assert other["events"] == ["group.completed", "job.completed", "job.failed"]

    assert api.delete(f"/v1/webhooks/endpoints/{endpoint_id}").status_code == 204
    assert_error(api.get(f"/v1/webhooks/endpoints/{endpoint_id}"), 404, "not_found")
    assert_error(api.delete(f"/v1/webhooks/endpoints/{endpoint_id}"), 404, "not_found")
    assert db.scalar(select(func.count()).select_from(WebhookEndpoint)) == 1


def test_another_tenants_endpoint_is_invisible(api: TestClient, db: Session) -> None:
    endpoint_id = api.post(
        "/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/hook"}
    ).json()["id"]
    _, key = make_tenant(db, name="other")
    from app.main import app

    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as other:
        assert_error(other.get(f"/v1/webhooks/endpoints/{endpoint_id}"), 404)
        assert_error(other.delete(f"/v1/webhooks/endpoints/{endpoint_id}"), 404)
        assert other.get("/v1/webhooks/endpoints").json() == []
        assert (
            other.get("/v1/webhooks/secret").json()["secret"]
            != (api.get("/v1/webhooks/secret").json()["secret"])
        )


def test_bad_endpoint_bodies_are_422(api: TestClient) -> None:
    assert_error(api.post("/v1/webhooks/endpoints", json={"url": "not a url"}), 422)
    assert_error(
        api.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9", "events": ["x"]}),
        422,
    )
    assert_error(
        api.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9", "events": []}), 422
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/hook",
        "http://127.0.0.1/hook",
        "http://[::1]:8080/hook",
        "http://10.0.0.5/hook",
        "http://192.168.0.10:3000/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://no-such-host.invalid/hook",
    ],
)
@pytest.mark.usefixtures("no_loopback")
def test_internal_urls_are_refused_at_registration(api: TestClient, db: Session, url: str) -> None:
    message = assert_error(api.post("/v1/webhooks/endpoints", json={"url": url}), 422)
    assert "refused" in message
    assert db.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


@pytest.mark.usefixtures("no_loopback")
def test_internal_webhook_urls_are_refused_at_submission(api: TestClient, db: Session) -> None:
    body = [
        {"prompt": "fine", "webhook_url": "https://93.184.215.14/hook"},
        {"prompt": "internal", "webhook_url": "http://localhost:9/hook"},
    ]
    message = assert_error(api.post("/v1/jobs", json=body), 422, "validation_error")
    assert "webhook_url" in message
    assert "loopback" in message
    assert db.scalar(select(func.count()).select_from(Job)) == 0
    body = {"prompt": "metadata", "webhook_url": "http://169.254.169.254/"}
    assert "metadata" in assert_error(api.post("/v1/jobs", json=body), 422)


def test_loopback_is_accepted_when_configured(api: TestClient) -> None:
    assert get_settings().webhook_allow_loopback  # tests/conftest.py allows it
    response = api.post("/v1/jobs", json={"prompt": "hi", "webhook_url": "http://localhost:9/h"})
    assert response.status_code == 202, response.text
    # Cloud metadata stays refused whatever is allowed.
    assert_error(api.post("/v1/webhooks/endpoints", json={"url": "http://169.254.169.254/"}), 422)


def test_tenant_secret_is_created_once_and_rotates_with_a_grace_period(api: TestClient) -> None:
    first = api.get("/v1/webhooks/secret").json()
    assert first["secret"].startswith("whsec_")
    assert first["previous_secret_expires_at"] is None
    assert api.get("/v1/webhooks/secret").json()["secret"] == first["secret"]
    rotated = api.post("/v1/webhooks/secret/rotate").json()
    assert rotated["secret"] != first["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    assert api.get("/v1/webhooks/secret").json()["secret"] == rotated["secret"]


def test_deliveries_are_listed_newest_first_a_page_at_a_time(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    api.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/hook"})
    config = webhook_config()
    jobs = [finish(db, tenant=tenant[0], config=config) for _ in range(5)]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = api.get("/v1/webhooks/deliveries", params=params).json()
        seen += [d["job_id"] for d in page["data"]]
        if page["next_before"] is None:
            break
        params["before"] = page["next_before"]
    assert seen == [str(job.id) for job in reversed(jobs)]
    by_job = api.get("/v1/webhooks/deliveries", params={"job_id": str(jobs[0].id)}).json()
    assert [d["job_id"] for d in by_job["data"]] == [str(jobs[0].id)]
    assert_error(api.get("/v1/webhooks/deliveries", params={"before": "x"}), 422)
    assert_error(api.get("/v1/webhooks/deliveries", params={"status": "lost"}), 422)
    assert_error(api.get(f"/v1/webhooks/deliveries/{uuid.uuid4()}"), 404)
    assert_error(api.post(f"/v1/webhooks/deliveries/{uuid.uuid4()}/redeliver"), 404)


def test_the_openapi_schema_lists_the_delivery_api(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/v1/webhooks/endpoints", "/v1/webhooks/deliveries/{delivery_id}/redeliver",
                 "/v1/groups/{group_id}/results", "/v1/groups/{group_id}/cancel"):  # fmt: skip
        assert path in paths
