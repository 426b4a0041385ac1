"""Redis for the embedded stack: the machine's if one answers, else one we start."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import redis

from app.stack.processes import Supervisor, wait_until


def answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        return bool(client.ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str, *, supervisor: Supervisor, data_dir: Path, env: dict[str, str]) -> bool:
    """Make sure ``url`` answers. Returns True when this call started a server."""
    if answers(url):
        return False
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            f"no Redis answers at {url} and redis-server is not installed; "
            "run `make deps` (installs it) or point THRIFTY_REDIS_URL at a Redis"
        )
    parsed = urlparse(url)
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--bind", parsed.hostname or "127.0.0.1",
        "--port", str(parsed.port or 6379),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
    ]  # fmt: skip
    supervisor.start("redis", argv, env=env, cwd=data_dir)
    wait_until(
        lambda: answers(url), timeout=20, what=f"Redis at {url}", on_poll=supervisor.check_alive
    )
    return True
