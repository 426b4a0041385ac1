"""``thrifty tenant create|limits|baseline NAME``, ``thrifty key create|list|revoke --tenant
NAME``.

They print ``key=value`` lines for scripts (``tenant=``, ``key_id=``, ``api_key=``). The
database is ``THRIFTY_DATABASE_URL``, or the embedded stack's on ``THRIFTY_PG_PORT``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from app.cli.console import fail, say

app = typer.Typer(no_args_is_help=True)
keys = typer.Typer(no_args_is_help=True)

TenantOption = Annotated[
    str, typer.Option("--tenant", help="the tenant's name", show_default=False)
]


@app.command(help="create a tenant and its first API key (refused if the name exists)")
def create(name: Annotated[str, typer.Argument(show_default=False)]) -> None:
    from app.kit.db import session_scope
    from app.kit.errors import Conflict
    from app.tenants import service as tenant_service

    try:
        with session_scope() as session:
            tenant = tenant_service.create_tenant(session, name=name)
            row, key = tenant_service.create_key(session, tenant=tenant, name="default")
    except Conflict as exc:
        fail(exc.message)
        raise typer.Exit(1) from exc
    say(f"tenant={name}")
    say(f"key_id={row.id}")
    say(f"api_key={key}")


Limit = Annotated[
    int | None,
    typer.Option(min=1, max=2**31 - 1, help="unset: the THRIFTY_TENANT_* setting"),
]


@app.command(help="set a tenant's own rate limits (options left out go back to the settings)")
def limits(
    name: Annotated[str, typer.Argument(show_default=False)],
    requests_per_minute: Limit = None,
    jobs_per_minute: Limit = None,
    max_unfinished_jobs: Limit = None,
) -> None:
    from app.config import get_settings
    from app.kit.db import session_scope
    from app.tenants import service as tenant_service

    settings = get_settings()
    with session_scope() as session:
        tenant = tenant_service.get_tenant(session, name=name)
        if tenant is None:
            fail(f"no tenant {name!r}")
            raise typer.Exit(1)
        tenant_service.set_limits(
            session,
            tenant=tenant,
            requests_per_minute=requests_per_minute,
            jobs_per_minute=jobs_per_minute,
            max_unfinished_jobs=max_unfinished_jobs,
        )
    say(f"tenant={name}")
    say(f"requests_per_minute={requests_per_minute or settings.tenant_requests_per_minute}")
    say(f"jobs_per_minute={jobs_per_minute or settings.tenant_jobs_per_minute}")
    say(f"max_unfinished_jobs={max_unfinished_jobs or settings.tenant_max_unfinished_jobs}")


@app.command(help="set the model a tenant's naive cost is priced on (no --model: the catalog's)")
def baseline(
    name: Annotated[str, typer.Argument(show_default=False)],
    model: Annotated[
        str | None, typer.Option(help="a catalog model; unset: the catalog's naive_model")
    ] = None,
) -> None:
    from app.catalog.catalog import get_catalog
    from app.kit.db import session_scope
    from app.tenants import service as tenant_service

    catalog = get_catalog()
    if model is not None and not catalog.has_model(model):
        known = ", ".join(m.name for m in catalog.models)
        fail(f"no model {model!r} in the catalog; known: {known}")
        raise typer.Exit(2)
    with session_scope() as session:
        tenant = tenant_service.get_tenant(session, name=name)
        if tenant is None:
            fail(f"no tenant {name!r}")
            raise typer.Exit(1)
        tenant_service.set_baseline_model(session, tenant=tenant, model=model)
    say(f"tenant={name}")
    say(f"baseline_model={model or catalog.naive_model}")


@keys.command("create", help="issue an API key for a tenant (every tenant scope by default)")
def create_key(
    tenant: TenantOption,
    name: Annotated[str, typer.Option(help="what the key is for")] = "default",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="a scope to grant (repeat the option): jobs:write, jobs:read, webhooks:write, "
            "cache:write, routing:write, stats:read, keys:write, operator",
            show_default=False,
        ),
    ] = None,
) -> None:
    from app.kit.db import session_scope
    from app.tenants import service as tenant_service
    from app.tenants.scopes import TENANT_SCOPES, Scope

    try:
        scopes = [Scope(value) for value in scope] if scope else sorted(TENANT_SCOPES)
    except ValueError as exc:
        fail(f"unknown scope: {exc}; known: {', '.join(s.value for s in Scope)}")
        raise typer.Exit(2) from exc
    with session_scope() as session:
        found = tenant_service.get_tenant(session, name=tenant)
        if found is None:
            fail(f"no tenant {tenant!r}; create it with `thrifty tenant create {tenant}`")
            raise typer.Exit(1)
        row, key = tenant_service.create_key(session, tenant=found, name=name, scopes=scopes)
    say(f"tenant={tenant}")
    say(f"key_id={row.id}")
    say(f"scopes={','.join(row.scopes)}")
    say(f"api_key={key}")


@keys.command("list", help="a tenant's keys: one line each, without secrets")
def list_keys(tenant: TenantOption) -> None:
    from app.kit.db import session_scope
    from app.tenants import service as tenant_service

    with session_scope() as session:
        found = tenant_service.get_tenant(session, name=tenant)
        if found is None:
            fail(f"no tenant {tenant!r}")
            raise typer.Exit(1)
        rows = tenant_service.list_keys(session, tenant_id=found.id)
    for row in rows:
        status = "revoked" if row.revoked_at else "active"
        expires = row.expires_at.isoformat() if row.expires_at else "never"
        used = row.last_used_at.isoformat() if row.last_used_at else "never"
        say(
            f"key_id={row.id} name={row.name} prefix={row.prefix} scopes={','.join(row.scopes)} "
            f"status={status} expires_at={expires} last_used_at={used}"
        )


@keys.command("revoke", help="revoke a key: refused from the next request on")
def revoke_key(
    key_id: Annotated[uuid.UUID, typer.Argument(show_default=False)], tenant: TenantOption
) -> None:
    from app.kit.db import session_scope
    from app.kit.errors import NotFound
    from app.tenants import service as tenant_service

    try:
        with session_scope() as session:
            found = tenant_service.get_tenant(session, name=tenant)
            if found is None:
                fail(f"no tenant {tenant!r}")
                raise typer.Exit(1)
            row = tenant_service.revoke_key(session, tenant_id=found.id, key_id=key_id)
    except NotFound as exc:
        fail(exc.message)
        raise typer.Exit(1) from exc
    say(f"key_id={row.id}")
    say(f"revoked_at={row.revoked_at.isoformat() if row.revoked_at else ''}")
