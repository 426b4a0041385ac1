"""``thrifty tenant create NAME``: prints ``tenant=NAME`` and ``api_key=...`` for scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.console import say

app = typer.Typer(no_args_is_help=True)


@app.command(help="create a tenant (or reuse it) and issue an API key")
def create(name: Annotated[str, typer.Argument(show_default=False)]) -> None:
    from app.kit.db import session_scope
    from app.tenants import service as tenant_service

    with session_scope() as session:
        tenant = tenant_service.get_or_create_tenant(session, name=name)
        key = tenant_service.issue_api_key(session, tenant=tenant)
    say(f"tenant={name}")
    say(f"api_key={key}")
