"""The ``thrifty`` command: one Typer app, one module per command group.

``stack`` (up, down, demo, migrate), ``jobs`` (submit, status, stats over HTTP), ``tenant``
(tenant create; key create|list|revoke), ``cache`` (eval cache, cache train), ``router``
(router train, eval router) and
``simulator``. Modules import the heavy parts of Thrifty inside their commands, so
``thrifty --help`` and the simulator start fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from app.cli import cache, jobs, router, simulator, stack, tenant
from app.cli.console import fail

app = typer.Typer(
    name="thrifty",
    help="Thrifty: the embedded stack, tenants, cache tools and the provider simulator.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    # Settings hold secrets (Flower password, API keys): never print locals in a traceback.
    pretty_exceptions_show_locals=False,
)
app.add_typer(stack.app)
app.add_typer(jobs.app)
app.add_typer(simulator.app)
app.add_typer(tenant.app, name="tenant", help="manage tenants")
app.add_typer(tenant.keys, name="key", help="manage a tenant's API keys")
app.add_typer(cache.eval_app, name="eval", help="measure parts of Thrifty on labelled data")
app.add_typer(cache.app, name="cache", help="semantic cache tools")
app.add_typer(router.app, name="router", help="learned router tools")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``thrifty`` with ``argv`` (default: the process's arguments); the exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="thrifty")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except RuntimeError as exc:
        # What the stack raises for a problem the user can fix (a port taken, a failed start).
        fail(str(exc))
        return 1
    return 0
