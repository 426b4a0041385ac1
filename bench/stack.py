"""What the end-to-end benches share: their own Postgres, Redis, simulator and Celery worker.

``bench.collector``, ``bench.ingest`` and ``bench.trace`` each start a private stack under a
directory of their own: embedded Postgres on a free port (database ``thrifty_bench``,
recreated), a private redis-server on a free port when one is installed (else the machine's
Redis on the database given), the provider simulator, and Celery workers started on demand.
Everything is configured through the environment before any ``app`` import reads it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_redis_url(fallback_db: int) -> str:
    """THRIFTY_BENCH_REDIS_URL, else a private redis-server on a free port when one is
    installed, else the machine's Redis on ``fallback_db``."""
    url = os.environ.get("THRIFTY_BENCH_REDIS_URL", "")
    if url:
        return url
    if shutil.which("redis-server") is not None:
        return f"redis://127.0.0.1:{free_port()}/0"
    return f"redis://127.0.0.1:6379/{fallback_db}"


def configure(
    work: Path, pg_port: int, redis_url: str, sim_port: int, **extra: str
) -> dict[str, str]:
    """Environment for this process and the children; set before any ``app`` import.
    ``extra`` adds or overrides variables (the stages' intervals, for example)."""
    catalog = Path(tempfile.mkdtemp(prefix="thrifty-bench-")) / "catalog.toml"
    shutil.copy(ROOT / "app" / "catalog" / "catalog.toml", catalog)
    env = {
        "THRIFTY_ENVIRONMENT": "development",
        "THRIFTY_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/thrifty_bench",
        "THRIFTY_REDIS_URL": redis_url,
        "THRIFTY_OPENAI_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
        "THRIFTY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "THRIFTY_REALTIME_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
        "THRIFTY_CATALOG_PATH": str(catalog),
        "THRIFTY_HOME": str(work),
        "HF_HUB_OFFLINE": "1",
        **extra,
    }
    os.environ.update(env)
    return env


def wait_for(check: Any, *, timeout: float, what: str, sup: Any) -> None:
    from app.stack.processes import wait_until

    wait_until(check, timeout=timeout, what=what, on_poll=sup.check_alive)


def start_worker(sup: Any, name: str, argv: list[str], env: dict[str, str], app: Any) -> Any:
    """A Celery child (``celery`` + ``argv``), once it answers a ping."""
    child = sup.start(name, [sys.executable, "-m", "celery", *argv], env=env, cwd=ROOT)
    wait_for(lambda: bool(app.control.ping(timeout=1.0)), timeout=90, what=name, sup=sup)
    return child


def thrifty_worker_argv(work: Path, name: str, concurrency: int) -> list[str]:
    """One worker with every queue and beat, as the benches run Thrifty."""
    from app.kit.queue import QUEUES

    return ["-A", "workers.celery_app", "worker", "-B", "-s", str(work / "beat-schedule"),
            "-Q", ",".join(QUEUES), "-c", str(concurrency), "-n", f"{name}@%h",
            "--loglevel", "INFO"]  # fmt: skip


@dataclass
class BenchStack:
    """A running private stack: its supervisor, environment and simulator address."""

    sup: Any
    env: dict[str, str]
    simulator_url: str  # ends in /v1


@contextlib.contextmanager
def running_stack(
    work: Path,
    *,
    simulator_argv: list[str],
    fallback_redis_db: int,
    say: Any = print,
    **extra_env: str,
) -> Iterator[BenchStack]:
    """Start Postgres (migrated, database recreated), Redis (flushed) and the simulator
    (``simulator_argv`` after ``python``, given ``--port``), yield, stop everything.

    ``simulator_argv`` is e.g. ``["-m", "app.cli", "simulator", "--processing-seconds", "0"]``.
    """
    work.mkdir(parents=True, exist_ok=True)
    pg_port, sim_port = free_port(), free_port()
    redis_url = bench_redis_url(fallback_redis_db)
    env = dict(os.environ, **configure(work, pg_port, redis_url, sim_port, **extra_env))

    from app.kit.db import get_engine
    from app.stack.embedded import migrate
    from app.stack.postgres import EmbeddedPostgres
    from app.stack.processes import Supervisor, http_ok
    from app.stack.redis import ensure_redis

    sup = Supervisor(work / "run" / "stack.json", work / "logs")
    postgres = EmbeddedPostgres(work / "pgdata", pg_port)
    try:
        say(f"starting Postgres on {pg_port}, Redis at {redis_url}, simulator on {sim_port}")
        postgres.start()
        postgres.ensure_database("thrifty_bench", recreate=True)
        migrate(env["THRIFTY_DATABASE_URL"])
        ensure_redis(redis_url, supervisor=sup, data_dir=work / "redis", env=env)
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        sup.start("bench-simulator", [sys.executable, *simulator_argv, "--port", str(sim_port)],
                  env=env, cwd=ROOT)  # fmt: skip
        wait_for(lambda: http_ok(f"http://127.0.0.1:{sim_port}/healthz"), timeout=30,
                 what="simulator", sup=sup)  # fmt: skip
        yield BenchStack(sup, env, f"http://127.0.0.1:{sim_port}/v1")
    finally:
        sup.stop_all()
        get_engine().dispose()
        postgres.stop()
