"""The whole service on one machine: Postgres+pgvector, Redis, migrations, API, worker, beat,
Flower and the provider simulator, as child processes of ``thrifty up`` / ``thrifty demo``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from alembic import command
from alembic.config import Config

from app.config import PROJECT_ROOT, Settings
from app.kit import queue
from app.stack.postgres import EmbeddedPostgres
from app.stack.processes import (
    Supervisor,
    http_ok,
    pid_alive,
    port_in_use,
    running_children,
    tail,
    wait_until,
)
from app.stack.redis import answers as redis_answers
from app.stack.redis import ensure_redis

DEV_TENANT = "dev"
DEV_KEY_NAME = "dev"


@dataclass(frozen=True)
class Ports:
    postgres: int
    api: int
    simulator: int
    flower: int
    metrics: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Ports:
        """The ports the settings give (``THRIFTY_PG_PORT``, ``_API_PORT``, ``_SIMULATOR_PORT``,
        ``_FLOWER_PORT``, ``_METRICS_PORT``)."""
        return cls(
            postgres=settings.pg_port,
            api=settings.api_port,
            simulator=settings.simulator_port,
            flower=settings.flower_port,
            metrics=settings.metrics_port,
        )


@dataclass
class StackInfo:
    api_url: str
    docs_url: str
    flower_url: str
    metrics_url: str
    simulator_url: str
    database_url: str
    redis_url: str
    api_key: str
    flower_auth: tuple[str, str]


def migrate(database_url: str) -> None:
    """Bring the schema to the newest revision of every Alembic branch."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "heads")


def _check_catalog() -> None:
    """Before anything starts: the catalog validates and the trained router it names loads."""
    from app.catalog.catalog import CatalogError, get_catalog
    from app.routing.strategies import RouterUnavailable, check_configured_router

    try:
        check_configured_router(get_catalog())
    except (CatalogError, RouterUnavailable) as exc:
        raise RuntimeError(str(exc)) from exc


class EmbeddedStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ports = Ports.from_settings(settings)
        self.home = settings.home
        self.postgres = EmbeddedPostgres(self.home / "pgdata", self.ports.postgres)
        self.supervisor = Supervisor(self.home / "run" / "stack.json", self.home / "logs")
        self.database_url = self.postgres.url("thrifty")
        self.redis_url = settings.redis_url
        self.api_url = f"http://127.0.0.1:{self.ports.api}"
        self.simulator_url = f"http://127.0.0.1:{self.ports.simulator}"
        self.flower_url = f"http://127.0.0.1:{self.ports.flower}"
        self.metrics_url = f"http://127.0.0.1:{self.ports.metrics}/metrics"
        # prometheus-client's multiprocess mode: every child writes its counters here and the
        # metrics server adds them up.
        self.metrics_dir = self.home / "run" / "prometheus"

    @property
    def ready_file(self) -> Path:
        """Written once the stack answers: its StackInfo, and the supervising process's pid."""
        return self.home / "run" / "ready.json"

    def already_running(self) -> bool:
        return (
            bool(running_children(self.supervisor.state_file)) or supervising_pid(self) is not None
        )

    def mark_ready(self, info: StackInfo) -> None:
        """Record that the stack is up, and which process supervises it (``thrifty down``
        asks that process to stop everything, so it does not restart what is stopped)."""
        data = {**asdict(info), "supervisor_pid": os.getpid()}
        self.ready_file.parent.mkdir(parents=True, exist_ok=True)
        self.ready_file.write_text(json.dumps(data))
        self.ready_file.chmod(0o600)

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            THRIFTY_DATABASE_URL=self.database_url,
            THRIFTY_REDIS_URL=self.redis_url,
            THRIFTY_OPENAI_BASE_URL=f"{self.simulator_url}/v1",
            THRIFTY_ANTHROPIC_BASE_URL=self.simulator_url,
            THRIFTY_REALTIME_BASE_URL=f"{self.simulator_url}/v1",
            THRIFTY_HOME=str(self.home),
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
            PYTHONUNBUFFERED="1",
        )
        # One machine: webhook receivers on it are allowed, and payload links point here.
        env.setdefault("THRIFTY_WEBHOOK_ALLOW_LOOPBACK", "true")
        env.setdefault("THRIFTY_PUBLIC_BASE_URL", self.api_url)
        return env

    def start(self, *, say: Callable[[str], None]) -> StackInfo:
        """Start everything and wait until each part answers. Stops what it started on failure."""
        _check_catalog()
        for name, port in (
            ("API", self.ports.api),
            ("simulator", self.ports.simulator),
            ("Flower", self.ports.flower),
            ("metrics", self.ports.metrics),
        ):
            if port_in_use(port):
                raise RuntimeError(
                    f"port {port} for the {name} is taken; stop what uses it (`thrifty down` "
                    f"if it is an earlier stack) or set THRIFTY_{name.upper()}_PORT"
                )
        try:
            return self._start(say)
        except BaseException:
            self.stop()
            raise

    def _start(self, say: Callable[[str], None]) -> StackInfo:
        env = self._child_env()
        # Counters of an earlier run's processes would be added to this run's.
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir.mkdir(parents=True)
        py = sys.executable
        user, password = self.settings.flower_user, self._flower_password()
        say(f"postgres   embedded Postgres + pgvector on 127.0.0.1:{self.ports.postgres}")
        self.postgres.start()
        self.postgres.ensure_database("thrifty")
        started_redis = ensure_redis(
            self.redis_url, supervisor=self.supervisor, data_dir=self.home / "redis", env=env
        )
        say(f"redis      {self.redis_url} ({'started' if started_redis else 'already running'})")
        say("migrate    alembic upgrade head")
        migrate(self.database_url)
        api_key = self._dev_key()

        celery = [py, "-m", "celery", "-A", "workers.celery_app"]
        self.supervisor.start(
            "simulator",
            [py, "-m", "app.cli", "simulator", "--port", str(self.ports.simulator)],
            env=env,
            cwd=PROJECT_ROOT,
        )
        self.supervisor.start(
            "api",
            [
                py,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports.api),
            ],
            env=env,
            cwd=PROJECT_ROOT,
        )
        for pool in queue.POOLS:
            self.supervisor.start(
                pool.name,
                [*celery, "worker", "-Q", ",".join(pool.queues), "-c", str(pool.concurrency),
                 "-P", pool.kind, "-n", f"thrifty-{pool.name}@%h", "--loglevel", "INFO",
                 # no start-up sync with the other workers (nothing here uses revokes or
                 # gossip): a restarted worker answers a second or two sooner
                 "--without-mingle", "--without-gossip"],
                env=env,
                cwd=PROJECT_ROOT,
            )  # fmt: skip
        self.supervisor.start(
            "beat",
            [*celery, "beat", "--loglevel", "INFO", "-s", str(self.home / "run" / "beat-schedule")],
            env=env,
            cwd=PROJECT_ROOT,
        )
        self.supervisor.start(
            "metrics",
            [py, "-m", "app.metrics", "--port", str(self.ports.metrics)],
            env=env,
            cwd=PROJECT_ROOT,
        )
        check = self.supervisor.check_alive
        wait_until(
            lambda: http_ok(f"{self.simulator_url}/healthz"),
            timeout=60,
            what="the simulator",
            on_poll=check,
        )
        say(f"simulator  {self.simulator_url}/v1 (OpenAI and Anthropic APIs)")
        wait_until(
            lambda: http_ok(f"{self.api_url}/healthz"), timeout=60, what="the API", on_poll=check
        )
        say(f"api        {self.api_url} (docs {self.api_url}/docs)")
        wait_until(self._worker_answers, timeout=90, what="the Celery worker", on_poll=check)
        for pool in queue.POOLS:
            say(f"{pool.name:<16} {pool.kind} x{pool.concurrency} on " + ", ".join(pool.queues))
        say("beat       running")
        wait_until(lambda: http_ok(self.metrics_url), timeout=60, what="metrics", on_poll=check)
        say(f"metrics    {self.metrics_url} (operator port; every tenant's metrics)")
        self.supervisor.start(
            "flower",
            [py, "-m", "app.stack.flower", "--address=127.0.0.1", f"--port={self.ports.flower}"],
            env={**env, "THRIFTY_FLOWER_PASSWORD": password},
            cwd=PROJECT_ROOT,
        )  # fmt: skip
        # Flower starts after the worker answers, and the first refresh fills its worker list.
        wait_until(
            lambda: self._flower_lists_worker((user, password)),
            timeout=60,
            what="Flower",
            on_poll=check,
        )
        say(f"flower     {self.flower_url} (user {user}, password {password})")
        return StackInfo(
            api_url=self.api_url,
            docs_url=f"{self.api_url}/docs",
            flower_url=self.flower_url,
            metrics_url=self.metrics_url,
            simulator_url=self.simulator_url,
            database_url=self.database_url,
            redis_url=self.redis_url,
            api_key=api_key,
            flower_auth=(user, password),
        )

    def _flower_password(self) -> str:
        """THRIFTY_FLOWER_PASSWORD; in development without one, a random password made once
        and kept in THRIFTY_HOME/flower-password (mode 0600)."""
        if self.settings.flower_password:
            return self.settings.flower_password
        if self.settings.environment != "development":
            raise RuntimeError("set THRIFTY_FLOWER_PASSWORD: Flower has no default password")
        stored = self.home / "flower-password"
        if stored.is_file() and stored.read_text().strip():
            return stored.read_text().strip()
        password = secrets.token_urlsafe(18)
        self.home.mkdir(parents=True, exist_ok=True)
        stored.write_text(password + "\n")
        stored.chmod(0o600)
        return password

    def _flower_lists_worker(self, auth: tuple[str, str]) -> bool:
        try:
            url = f"{self.flower_url}/api/workers?refresh=1"
            response = httpx.get(url, auth=auth, timeout=10)
            return response.status_code == 200 and bool(response.json())
        except (httpx.HTTPError, ValueError):
            return False

    def _worker_answers(self) -> bool:
        """Whether every pool's worker answers a ping."""
        if not redis_answers(self.redis_url):
            return False
        replies = queue.get_sender().control.ping(timeout=1.0) or []
        names = {name.split("@")[0] for reply in replies for name in reply}
        return all(f"thrifty-{pool.name}" in names for pool in queue.POOLS)

    def _dev_key(self) -> str:
        """The development tenant's one key: the one in ``dev-api-key`` while it is valid, so
        restarts keep it; a new one (and the old revoked) otherwise."""
        # Imported here: the engine must be built for the embedded database URL.
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session

        from app.tenants import service as tenant_service

        key_file = self.home / "dev-api-key"
        kept = key_file.read_text().strip() if key_file.is_file() else None
        engine = create_engine(self.database_url)
        try:
            with Session(engine) as session:
                tenant = tenant_service.get_or_create_tenant(session, name=DEV_TENANT)
                key = tenant_service.ensure_named_key(
                    session, tenant=tenant, name=DEV_KEY_NAME, key=kept
                )
                session.commit()
        finally:
            engine.dispose()
        if key != kept:
            key_file.write_text(key + "\n")
            key_file.chmod(0o600)
        return key

    def stop(self) -> None:
        """Stop the children this stack started, then Postgres."""
        self.supervisor.stop_all()
        self.postgres.stop()
        self.ready_file.unlink(missing_ok=True)


def supervising_pid(stack: EmbeddedStack) -> int | None:
    """The pid of the ``thrifty up`` that supervises a running stack, if one does."""
    try:
        pid = int(json.loads(stack.ready_file.read_text())["supervisor_pid"])
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid != os.getpid() and pid_alive(pid) else None


def start_detached(settings: Settings, *, say: Callable[[str], None]) -> StackInfo:
    """Run ``thrifty up`` in the background (its own session, output in logs/stack.log), so
    the stack is supervised as in the foreground; returns once it is up."""
    stack = EmbeddedStack(settings)
    stack.ready_file.unlink(missing_ok=True)
    log = stack.home / "logs" / "stack.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up"],
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    say(f"starting in the background (pid {proc.pid}, log {log})")

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"thrifty up exited with code {proc.returncode}:\n{tail(log)}")
        return stack.ready_file.exists()

    wait_until(ready, timeout=600, what="the stack")
    data = json.loads(stack.ready_file.read_text())
    data.pop("supervisor_pid", None)
    data["flower_auth"] = tuple(data["flower_auth"])
    return StackInfo(**data)


def stop_running(settings: Settings) -> bool:
    """Stop a stack left running by an earlier ``thrifty up``. Returns False if none was."""
    stack = EmbeddedStack(settings)
    supervisor = supervising_pid(stack)
    if supervisor is not None:
        # Its own shutdown stops the children (and Postgres) without restarting them.
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGTERM)
        with contextlib.suppress(RuntimeError):
            wait_until(lambda: not pid_alive(supervisor), timeout=120, what="thrifty up to stop")
    children = running_children(stack.supervisor.state_file)
    for child in children:
        stack.supervisor.children.append(child)
    stack.stop()
    return bool(children) or supervisor is not None
