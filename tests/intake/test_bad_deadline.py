"""A deadline already past is refused with a 422 in the one error schema, naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient


def test_a_deadline_in_the_past_is_a_422(api: TestClient) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = api.post("/v1/jobs", json={"prompt": "Hello?", "deadline": past})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert error["message"].startswith("deadline: is in the past")

    # In a list, the job is named.
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    jobs = [{"prompt": "Hello?", "deadline": future}, {"prompt": "Hi?", "deadline": past}]
    response = api.post("/v1/jobs", json=jobs)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith("jobs[1].deadline: is in the past")

    assert api.post("/v1/jobs", json={"prompt": "Hello?", "deadline": future}).status_code == 202
