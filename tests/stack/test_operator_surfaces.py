"""Operator surfaces closed: Flower needs a password of its own and guards every page;
docker-compose ships production defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app.config import Settings
from app.stack.embedded import EmbeddedStack
from app.stack.processes import Supervisor, wait_until
from tests.conftest import ROOT, free_port


def test_flower_will_not_start_without_a_password_of_its_own() -> None:
    for password in ("", "thrifty"):
        env = {**os.environ, "THRIFTY_FLOWER_PASSWORD": password}
        env.pop("THRIFTY_ENVIRONMENT", None)
        done = subprocess.run(
            [sys.executable, "-m", "app.stack.flower", "--port=1"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "THRIFTY_FLOWER_PASSWORD" in done.stderr


def test_production_refuses_the_old_default_password() -> None:
    with pytest.raises(ValueError, match="THRIFTY_FLOWER_PASSWORD"):
        Settings(environment="production", flower_password="thrifty")
    assert Settings(environment="production", flower_password="").flower_password is None


def test_the_dev_stack_makes_a_random_flower_password_once(tmp_path: Path) -> None:
    stack = EmbeddedStack(Settings(environment="development", home=tmp_path))
    first = stack._flower_password()
    assert len(first) >= 20
    assert first != "thrifty"
    assert stack._flower_password() == first
    assert (tmp_path / "flower-password").stat().st_mode & 0o077 == 0
    outside = EmbeddedStack(Settings(environment="test", home=tmp_path / "other"))
    with pytest.raises(RuntimeError, match="THRIFTY_FLOWER_PASSWORD"):
        outside._flower_password()


@pytest.fixture
def flower(broker: str, supervisor: Supervisor) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "THRIFTY_FLOWER_USER": "ops", "THRIFTY_FLOWER_PASSWORD": "s3cret-pw"}
    argv = [sys.executable, "-m", "app.stack.flower", "--address=127.0.0.1", f"--port={port}"]
    child = supervisor.start("flower-test", argv, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            httpx.get(url + "/healthcheck", timeout=2)
            return True
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=60, what="Flower", on_poll=supervisor.check_alive)
    yield url
    supervisor.stop(child)


def test_flower_metrics_and_healthcheck_need_the_login(flower: str) -> None:
    for path in ("/metrics", "/healthcheck", "/api/workers", "/"):
        assert httpx.get(flower + path, timeout=10).status_code == 401, path
        wrong = httpx.get(flower + path, auth=("ops", "nope"), timeout=10)
        assert wrong.status_code == 401, path
    assert httpx.get(flower + "/healthcheck", auth=("ops", "s3cret-pw"), timeout=10).text == "OK"
    metrics = httpx.get(flower + "/metrics", auth=("ops", "s3cret-pw"), timeout=10)
    assert metrics.status_code == 200


def test_compose_ships_production_defaults() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["x-thrifty"]["environment"]
    assert env["THRIFTY_ENVIRONMENT"] == "${THRIFTY_ENVIRONMENT:-production}"
    assert env["THRIFTY_FLOWER_PASSWORD"] == "${THRIFTY_FLOWER_PASSWORD:-}"
    flower = compose["services"]["flower"]
    assert flower["profiles"] == ["operator"]
    assert flower["command"][:3] == ["python", "-m", "app.stack.flower"]
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert name == "api" or port.startswith("127.0.0.1:"), (name, port)
