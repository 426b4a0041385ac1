"""Starting, watching and stopping the embedded stack's child processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass
class Child:
    name: str
    pid: int
    log: Path


# Restart backoff: 1 s after the first exit, doubling up to a minute; a child that ran for
# RESET_AFTER seconds before it died starts again from 1 s (as Docker's restart policy: a
# container that ran 10 s is restarted at its first delay again).
RESTART_BACKOFF_MAX = 60.0
RESET_AFTER = 10.0


@dataclass
class _Spec:
    """How a child was started, to start it again; and its restart history."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    started: float
    failures: int = 0
    due: float | None = None  # when the next restart is due, once it has exited


@dataclass
class Supervisor:
    """Runs children in their own process groups and remembers them in a state file;
    ``restart_exited`` starts a child that died again, with backoff, as compose's
    ``restart: unless-stopped`` does."""

    state_file: Path
    log_dir: Path
    children: list[Child] = field(default_factory=list)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _specs: dict[str, _Spec] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path) -> Child:
        proc, log = self._spawn(name, argv, env=env, cwd=cwd)
        child = Child(name, proc.pid, log)
        self.children.append(child)
        self._procs[name] = proc
        self._specs[name] = _Spec(argv, env, cwd, time.monotonic())
        self.save()
        return child

    def _spawn(
        self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path
    ) -> tuple[subprocess.Popen[bytes], Path]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return proc, log

    def restart_exited(self, *, say: Callable[[str], None] = lambda _: None) -> list[str]:
        """Start again every child that has exited, each once its backoff has passed; says
        (and writes in the child's log) what it does. Returns the names restarted."""
        restarted = []
        now = time.monotonic()
        for child in self.children:
            proc, spec = self._procs.get(child.name), self._specs.get(child.name)
            if proc is None or spec is None or proc.poll() is None:
                continue
            if spec.due is None:
                spec.failures = 1 if now - spec.started >= RESET_AFTER else spec.failures + 1
                delay = min(RESTART_BACKOFF_MAX, 2.0 ** (spec.failures - 1))
                spec.due = now + delay
                self._note(
                    child,
                    say,
                    f"{child.name} exited with code {proc.returncode}; restarting it in "
                    f"{delay:.0f}s (restart {spec.failures})",
                )
            if now < spec.due:
                continue
            proc, _ = self._spawn(child.name, spec.argv, env=spec.env, cwd=spec.cwd)
            self._procs[child.name] = proc
            child.pid = proc.pid
            spec.started, spec.due = now, None
            self._note(child, say, f"{child.name} restarted (pid {proc.pid})")
            restarted.append(child.name)
        if restarted:
            self.save()
        return restarted

    def _note(self, child: Child, say: Callable[[str], None], message: str) -> None:
        say(f"supervisor: {message}")
        with child.log.open("a") as out:
            out.write(f"[thrifty supervisor] {message}\n")

    def check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                log = self.log_dir / f"{name}.log"
                raise RuntimeError(
                    f"{name} exited with code {proc.returncode}; last lines of {log}:\n" + tail(log)
                )

    def exited(self, child: Child) -> bool:
        """Whether ``child`` (started by this supervisor) has exited."""
        proc = self._procs.get(child.name)
        return proc is not None and proc.poll() is not None

    def save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        data = [{"name": c.name, "pid": c.pid, "log": str(c.log)} for c in self.children]
        self.state_file.write_text(json.dumps(data))

    def stop(self, child: Child) -> None:
        stop_pids([child.pid])
        self.children.remove(child)
        self._procs.pop(child.name, None)
        self._specs.pop(child.name, None)
        self.save()

    def stop_all(self) -> None:
        stop_pids([c.pid for c in reversed(self.children)])
        self.children.clear()
        self._procs.clear()
        self._specs.clear()
        self.state_file.unlink(missing_ok=True)


def running_children(state_file: Path) -> list[Child]:
    """Children recorded by an earlier ``thrifty up`` that are still alive."""
    if not state_file.exists():
        return []
    alive = []
    for item in json.loads(state_file.read_text()):
        if pid_alive(item["pid"]):
            alive.append(Child(item["name"], item["pid"], Path(item["log"])))
    return alive


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pids(pids: list[int], *, grace: float = 10.0) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after ``grace`` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in pids:
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    on_poll: Callable[[], None] = lambda: None,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        on_poll()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def http_ok(url: str, *, auth: tuple[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, timeout=2.0, auth=auth).status_code == 200
    except httpx.HTTPError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
