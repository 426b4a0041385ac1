"""A migrated database for a command run outside the service (`thrifty eval cache`, the cache
benchmark): the configured one, or the embedded Postgres started for the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.stack.embedded import migrate
from app.stack.postgres import EmbeddedPostgres


@contextmanager
def migrated_database(
    say: Callable[[str], None], *, name: str | None = None
) -> Iterator[sessionmaker[Session]]:
    """Sessions on THRIFTY_DATABASE_URL (or database ``name`` on the same server), migrated.
    When nothing answers there and it is a local address, the embedded Postgres is started
    for the run and stopped after."""
    settings = get_settings()
    url = make_url(settings.database_url)
    if name is not None:
        url = url.set(database=name)
    server = EmbeddedPostgres(settings.home / "pgdata", url.port or 5432, host=url.host or "")
    started = False
    try:
        with psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname="postgres",
            connect_timeout=3,
        ):
            pass
    except psycopg.OperationalError:
        if url.host not in ("127.0.0.1", "localhost"):
            raise
        say(f"no Postgres on {url.host}:{url.port}; starting the embedded one for this run")
        server.start()
        started = True
    if name is not None or started:
        server.ensure_database(url.database or "thrifty")
    rendered = url.render_as_string(hide_password=False)
    migrate(rendered)
    engine = create_engine(rendered)
    try:
        yield sessionmaker(engine)
    finally:
        engine.dispose()
        if started:
            server.stop()
