"""Shared fixtures: embedded Postgres+pgvector, Redis, the simulator and a Celery worker.

Everything is real: the database is the embedded Postgres (pgvector bundled), the broker is
the machine's Redis (or one started here), the simulator and the worker run as processes.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

# Settings are read once per process; fix them before anything from `app` is imported.
ROOT = Path(__file__).resolve().parent.parent
TEST_HOME = Path(os.environ.get("THRIFTY_TEST_HOME", ROOT / ".thrifty" / "test"))
PG_PORT = int(os.environ.get("THRIFTY_TEST_PG_PORT", "5434"))
REDIS_URL = os.environ.get("THRIFTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_CATALOG = Path(tempfile.mkdtemp(prefix="thrifty-test-")) / "catalog.toml"


def _test_catalog() -> str:
    """The shipped catalog with short windows, so integration tests do not wait 10 s."""
    text = (ROOT / "app" / "catalog" / "catalog.toml").read_text()
    tomllib.loads(text)  # fail early if the shipped catalog is broken
    return text.replace("max_wait_seconds = 10", "max_wait_seconds = 0.5")


_CATALOG.write_text(_test_catalog())
os.environ.update(
    THRIFTY_ENVIRONMENT="test",
    THRIFTY_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{PG_PORT}/thrifty_test",
    THRIFTY_REDIS_URL=REDIS_URL,
    THRIFTY_CATALOG_PATH=str(_CATALOG),
    THRIFTY_HOME=str(TEST_HOME),
    THRIFTY_COLLECT_INTERVAL_SECONDS="0.2",
    THRIFTY_POLL_INTERVAL_SECONDS="0.3",
    THRIFTY_SWEEP_INTERVAL_SECONDS="1",
    THRIFTY_STALE_AFTER_SECONDS="2",
    # Webhook tests run their receiver on 127.0.0.1.
    THRIFTY_WEBHOOK_ALLOW_LOOPBACK="true",
)

import httpx  # noqa: E402
import psycopg  # noqa: E402
import pytest  # noqa: E402
import redis  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.kit.db import get_engine, get_sessionmaker  # noqa: E402
from app.kit.queue import QUEUES  # noqa: E402
from app.models import Base, Tenant  # noqa: E402
from app.stack.embedded import migrate  # noqa: E402
from app.stack.postgres import EmbeddedPostgres  # noqa: E402
from app.stack.processes import Supervisor, http_ok, wait_until  # noqa: E402
from app.stack.redis import ensure_redis  # noqa: E402
from app.tenants import service as tenant_service  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor(TEST_HOME / "run" / "stack.json", TEST_HOME / "logs")
    yield sup
    sup.stop_all()


@pytest.fixture(scope="session")
def database(supervisor: Supervisor) -> Iterator[str]:
    """A fresh, migrated test database on the embedded Postgres."""
    TEST_HOME.mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(TEST_HOME / "pgdata", PG_PORT)
    postgres.start()
    postgres.ensure_database("thrifty_test", recreate=True)
    url = os.environ["THRIFTY_DATABASE_URL"]
    migrate(url)
    yield url
    get_engine().dispose()
    postgres.stop()


@pytest.fixture(scope="session")
def broker(supervisor: Supervisor) -> str:
    ensure_redis(
        REDIS_URL, supervisor=supervisor, data_dir=TEST_HOME / "redis", env=dict(os.environ)
    )
    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


TABLES = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))


@pytest.fixture
def db(database: str, broker: str) -> Iterator[Session]:
    """A session on an emptied database."""
    for attempt in range(10):
        try:
            with get_engine().begin() as conn:
                conn.execute(text(f"TRUNCATE {TABLES} CASCADE"))
            break
        except OperationalError as exc:
            # A worker still running (a module-scoped one, its beat) can deadlock with the
            # TRUNCATE's table locks; Postgres aborts one side, and emptying again succeeds.
            if attempt == 9 or not isinstance(exc.orig, psycopg.errors.DeadlockDetected):
                raise
            time.sleep(0.2)
    # No circuit opened by an earlier test's fault storm leaks into this one.
    from app.providers import breaker

    breaker.close()
    session = get_sessionmaker()()
    yield session
    session.close()


def make_tenant(session: Session, *, name: str = "acme") -> tuple[Tenant, str]:
    """A committed tenant and a fresh API key for it."""
    tenant = tenant_service.get_or_create_tenant(session, name=name)
    key = tenant_service.issue_api_key(session, tenant=tenant)
    session.commit()
    return tenant, key


def operator_headers(session: Session, tenant: Tenant) -> dict[str, str]:
    """Headers of a committed key with the operator scope (``/metrics``)."""
    from app.tenants.scopes import Scope

    _, key = tenant_service.create_key(
        session, tenant=tenant, name="operator", scopes=[Scope.operator]
    )
    session.commit()
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def tenant(db: Session) -> tuple[Tenant, str]:
    return make_tenant(db)


@pytest.fixture
def api(db: Session, tenant: tuple[Tenant, str]) -> Iterator[TestClient]:
    """The API in-process, authenticated as ``tenant``."""
    from app.main import app

    with TestClient(app, headers={"Authorization": f"Bearer {tenant[1]}"}) as client:
        yield client


@pytest.fixture(scope="session")
def simulator(supervisor: Supervisor) -> str:
    """The provider simulator as its own process, over real HTTP; returns its /v1 base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "app.cli", "simulator", "--port", str(port),
            "--validating-seconds", "0.1", "--processing-seconds", "0.4"]  # fmt: skip
    supervisor.start("simulator", argv, env=dict(os.environ), cwd=ROOT)
    wait_until(
        lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        timeout=30,
        what="simulator",
        on_poll=supervisor.check_alive,
    )
    base = f"http://127.0.0.1:{port}/v1"
    os.environ["THRIFTY_OPENAI_BASE_URL"] = base
    os.environ["THRIFTY_ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    os.environ["THRIFTY_REALTIME_BASE_URL"] = base
    return base


@pytest.fixture(scope="module")
def worker(database: str, broker: str, simulator: str, supervisor: Supervisor) -> Iterator[str]:
    """A real Celery worker process with beat embedded, wired to the test DB and simulator.

    Module-scoped: tests elsewhere expect queued jobs to stay queued.
    """
    redis.Redis.from_url(broker).flushdb()
    env = dict(os.environ, THRIFTY_OPENAI_BASE_URL=simulator)
    schedule = TEST_HOME / "run" / "beat-schedule"
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-B",
            "-s", str(schedule), "-Q", ",".join(QUEUES), "-c", "2",
            "-n", "test@%h", "--loglevel", "INFO"]  # fmt: skip
    child = supervisor.start("worker", argv, env=env, cwd=ROOT)
    from app.kit.queue import get_sender

    wait_until(
        lambda: bool(get_sender().control.ping(timeout=1.0)),
        timeout=60,
        what="Celery worker",
        on_poll=supervisor.check_alive,
    )
    yield child.name
    supervisor.stop(child)
    redis.Redis.from_url(broker).flushdb()


@pytest.fixture
def provider_http(simulator: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator + "/", headers={"Authorization": "Bearer t"}) as client:
        yield client
