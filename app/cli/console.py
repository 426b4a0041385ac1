"""Where the CLI writes: plain lines for what scripts read (``key=value``, errors), Rich for
what only people read (the table of addresses, the demo's progress bar)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from app.stack.embedded import StackInfo

console = Console(highlight=False)


def say(message: str) -> None:
    """One plain line on stdout, flushed (logs of a piped ``thrifty up`` stay current)."""
    print(message, flush=True)


def fail(message: str) -> None:
    """``thrifty: message`` on stderr."""
    print(f"thrifty: {message}", file=sys.stderr, flush=True)


def print_access(info: StackInfo, home: Path) -> None:
    """Where every part of a started stack answers, and the development API key."""
    user, password = info.flower_auth
    rows = [
        ("API", info.api_url),
        ("API docs", info.docs_url),
        ("Flower", f"{info.flower_url}  (user {user}, password {password})"),
        ("metrics", f"{info.metrics_url}  (operator port, every tenant)"),
        ("simulator", f"{info.simulator_url}/v1"),
        ("database", info.database_url),
        ("broker", info.redis_url),
        ("API key", info.api_key),
        ("", f"(tenant 'dev'; also in {home}/dev-api-key)"),
    ]
    table = Table(title="Thrifty is running", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, where in rows:
        # Text, not markup: a password or URL may hold square brackets.
        table.add_row(Text(name), Text(where))
    console.print()
    console.print(table)
