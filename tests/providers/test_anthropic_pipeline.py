"""A job pinned to a Claude model goes through a real worker and the Anthropic batch API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_pipeline import DOC, wait_for

pytestmark = pytest.mark.usefixtures("worker")


def test_a_claude_job_goes_through_anthropic_message_batches(api: TestClient) -> None:
    response = api.post("/v1/jobs", json={"document": DOC, "model": "claude-3-5-haiku-latest"})
    assert response.status_code == 202, response.text
    job_id = response.json()["jobs"][0]["id"]

    job = wait_for(api, f"/v1/jobs/{job_id}", lambda b: b["state"] in {"completed", "failed"})

    assert job["state"] == "completed", job
    assert job["model"] == "claude-3-5-haiku-latest"
    assert "Millbrook" in job["result"]
    assert 0 < job["usage"]["output_tokens"] < job["usage"]["input_tokens"]
