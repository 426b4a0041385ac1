"""`thrifty up` supervises its children: one that dies is started again, with backoff, and
its log says so (a Celery worker that exits when Redis restarts comes back by itself)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from app.stack.processes import RESET_AFTER, Supervisor, pid_alive, wait_until


def test_a_killed_child_is_restarted_with_backoff_and_the_log_says_so(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path / "stack.json", tmp_path / "logs")
    said: list[str] = []
    try:
        child = sup.start(
            "sleeper",
            [sys.executable, "-c", "import time; time.sleep(600)"],
            env=dict(os.environ),
            cwd=tmp_path,
        )
        first = child.pid
        os.killpg(first, signal.SIGKILL)
        wait_until(lambda: bool(sup.restart_exited(say=said.append)), timeout=30, what="restart")
        assert child.pid != first
        assert pid_alive(child.pid)
        assert f'"pid": {child.pid}' in sup.state_file.read_text()  # `thrifty down` finds it

        # Dying again at once waits longer before the next start: 1 s, then 2 s.
        os.killpg(child.pid, signal.SIGKILL)
        wait_until(lambda: bool(sup.restart_exited(say=said.append)), timeout=30, what="again")

        # One that ran for RESET_AFTER seconds (as Docker: 10 s) before dying starts from 1 s.
        sup._specs["sleeper"].started -= RESET_AFTER
        os.killpg(child.pid, signal.SIGKILL)
        wait_until(lambda: bool(sup.restart_exited(say=said.append)), timeout=30, what="reset")
    finally:
        sup.stop_all()
    log = (tmp_path / "logs" / "sleeper.log").read_text()
    assert log.count("sleeper exited with code -9; restarting it in 1s (restart 1)") == 2
    assert "restarting it in 2s (restart 2)" in log
    assert log.count("sleeper restarted (pid") == 3
    assert any("restarting it in" in line for line in said)
