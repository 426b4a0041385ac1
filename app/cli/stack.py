"""``thrifty up``, ``down``, ``demo`` and ``migrate``: the embedded stack on one machine."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from app.cli.console import console, print_access, say
from app.config import get_settings

if TYPE_CHECKING:
    from app.demo.run import Snapshot

app = typer.Typer()


@app.command(help="start the embedded stack (Ctrl-C stops it)")
def up(
    detach: Annotated[
        bool, typer.Option("--detach", help="leave it running in the background")
    ] = False,
) -> None:
    from app.stack.embedded import EmbeddedStack, start_detached

    settings = get_settings()
    stack = EmbeddedStack(settings)
    if stack.already_running():
        say("a Thrifty stack is already running; stop it with `thrifty down`")
        raise typer.Exit(1)
    if detach:
        # The stack runs under a `thrifty up` of its own in the background, which supervises
        # the children as this one would; this process waits for it to be up and leaves.
        info = start_detached(settings, say=say)
        print_access(info, settings.home)
        say("\nLeft running in the background; stop it with `thrifty down`.")
        return
    stop = _stop_on_signal()
    info = stack.start(say=say)
    stack.mark_ready(info)
    print_access(info, settings.home)
    say("\nPress Ctrl-C to stop. Children that exit are restarted (with backoff).")
    while not stop.wait(1.0):
        stack.supervisor.restart_exited(say=say)
    say("stopping...")
    stack.stop()


def _stop_on_signal() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _wait_for_signal() -> None:
    _stop_on_signal().wait()


@app.command(help="stop a stack left running by `thrifty up --detach`")
def down() -> None:
    from app.stack.embedded import stop_running

    say("stopped" if stop_running(get_settings()) else "no running stack found; Postgres stopped")


@app.command(help="start the stack and summarise the sample documents")
def demo(
    count: Annotated[int, typer.Option(help="documents to submit (max 200)")] = 200,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="leave the stack up afterwards")
    ] = False,
) -> None:
    from app.demo.run import run
    from app.stack.embedded import EmbeddedStack

    settings = get_settings()
    stack = EmbeddedStack(settings)
    if stack.already_running():
        say("a Thrifty stack is already running; stop it with `thrifty down` first")
        raise typer.Exit(1)
    say("Starting the embedded stack...")
    # SIGTERM unwinds like Ctrl-C, so the stack is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    info = stack.start(say=say)
    try:
        print_access(info, settings.home)
        with _progress_bar() as progress:
            ok = run(info, count=count, say=say, progress=progress)
        say(f"\nAPI docs: {info.docs_url}   Flower: {info.flower_url}")
        if keep_running:
            say("\nKept running (--keep-running). Press Ctrl-C to stop.")
            _wait_for_signal()
    finally:
        say("\nstopping the stack...")
        stack.stop()
    if not keep_running:
        say("stopped. Run `thrifty demo --keep-running` or `thrifty up` to keep it up.")
    if not ok:
        raise typer.Exit(1)


@contextmanager
def _progress_bar() -> Iterator[Callable[[Snapshot], None] | None]:
    """A Rich progress bar on a terminal; elsewhere (a log, a pipe) None: the demo's lines."""
    if not console.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("  summarising"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    task: TaskID | None = None  # added at the first poll, when the total is known

    def show(snapshot: Snapshot) -> None:
        nonlocal task
        if task is None:
            task = bar.add_task("demo", total=snapshot.total, detail="")
        bar.update(
            task,
            completed=snapshot.completed,
            detail=f"queued {snapshot.queued}  waiting {snapshot.waiting}"
            f"  in batch {snapshot.in_batch}  failed {snapshot.failed}",
        )
        if snapshot.done:
            # Leave the finished bar on screen; what follows prints below it.
            bar.stop()

    with bar:
        yield show


@app.command(help="apply database migrations (THRIFTY_DATABASE_URL)")
def migrate() -> None:
    from app.stack.embedded import migrate as upgrade

    upgrade(get_settings().database_url)
    say("database is at the newest revision")
