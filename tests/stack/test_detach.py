"""`thrifty up --detach` leaves a supervised stack running in the background and returns;
`thrifty down` stops it, children and all. The real stack, in a home and on ports of its own
(the test Redis as its broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from app.stack.processes import pid_alive, wait_until
from tests.conftest import REDIS_URL, ROOT, free_port


def thrifty(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_up_detach_leaves_a_supervised_stack_that_down_stops(tmp_path: Path, broker: str) -> None:
    env = {
        **os.environ,
        "THRIFTY_HOME": str(tmp_path),
        "THRIFTY_REDIS_URL": REDIS_URL,
        "THRIFTY_FLOWER_PASSWORD": "detach-test-pw",
        **{f"THRIFTY_{p}_PORT": str(free_port()) for p in ("PG", "API", "SIMULATOR", "FLOWER")},
        "THRIFTY_METRICS_PORT": str(free_port()),
    }
    env.pop("THRIFTY_DATABASE_URL", None)  # the stack's own Postgres
    run = tmp_path / "run"
    try:
        up = thrifty("up", "--detach", env=env, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Left running in the background" in up.stdout
        ready = json.loads((run / "ready.json").read_text())
        supervisor = int(ready["supervisor_pid"])
        assert supervisor != os.getpid()
        assert pid_alive(supervisor)
        children = {c["name"]: int(c["pid"]) for c in json.loads((run / "stack.json").read_text())}
        assert {"api", "worker", "worker-ingest", "beat"} <= set(children)

        # The stack works after `up` returned: the API takes a job with the key it printed,
        # and the background workers carry it to its result.
        key = (tmp_path / "dev-api-key").read_text().strip()
        assert key in up.stdout
        api, auth = ready["api_url"], {"Authorization": f"Bearer {key}"}
        job = {"prompt": "Say hi.", "cache": "bypass"}
        sent = httpx.post(f"{api}/v1/jobs", json=job, headers=auth, timeout=30)
        assert sent.status_code == 202, sent.text
        url = f"{api}/v1/jobs/{sent.json()['jobs'][0]['id']}"

        def completed() -> bool:
            return httpx.get(url, headers=auth, timeout=10).json()["state"] == "completed"

        wait_until(completed, timeout=120, what="the job to complete in the detached stack")

        again = thrifty("up", "--detach", env=env, timeout=120)
        assert again.returncode == 1
        assert "already running" in again.stdout
    finally:
        down = thrifty("down", env=env, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped" in down.stdout
    wait_until(
        lambda: not pid_alive(supervisor) and not any(map(pid_alive, children.values())),
        timeout=60,
        what="the stack to stop",
    )
    assert not (run / "ready.json").exists()
