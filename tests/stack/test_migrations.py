"""Alembic migrations on a scratch database of the embedded Postgres: up, down, up again, and
the ORM metadata matches what they build."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect, pool, text

from app.config import PROJECT_ROOT
from app.models import Base
from app.stack.embedded import migrate
from app.stack.postgres import EmbeddedPostgres
from tests.conftest import PG_PORT, TEST_HOME

SCRATCH = "thrifty_migrations"
TABLES = {t.name for t in Base.metadata.sorted_tables}
ENUMS = {"job_state", "batch_state"}


def alembic_config(url: str) -> Config:
    """The same configuration ``app.stack.embedded.migrate`` builds."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture
def scratch_url(database: str) -> Iterator[str]:
    """An empty database beside the test one (the ``database`` fixture starts the server)."""
    postgres = EmbeddedPostgres(TEST_HOME / "pgdata", PG_PORT)
    postgres.ensure_database(SCRATCH, recreate=True)
    yield postgres.url(SCRATCH)
    with psycopg.connect(
        host=postgres.host, port=postgres.port, user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


@pytest.fixture
def engine(scratch_url: str) -> Iterator[Engine]:
    engine = create_engine(scratch_url, poolclass=pool.NullPool)
    yield engine
    engine.dispose()


def extensions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(text("SELECT extname FROM pg_extension")))


def enum_types(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(text("SELECT typname FROM pg_type WHERE typtype = 'e'")))


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrations_upgrade_downgrade_and_match_the_models(
    scratch_url: str, engine: Engine
) -> None:
    migrate(scratch_url)

    assert "vector" in extensions(engine)
    assert tables(engine) == TABLES
    assert enum_types(engine) >= ENUMS
    assert schema_differences(engine) == []
    with engine.connect() as conn:
        # pgvector is usable, not just registered.
        assert conn.scalar(text("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector")) == 1.0

    command.downgrade(alembic_config(scratch_url), "base")

    assert tables(engine) == set()
    assert not ENUMS & enum_types(engine)
    assert "vector" not in extensions(engine)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 0

    migrate(scratch_url)

    assert "vector" in extensions(engine)
    assert tables(engine) == TABLES
    assert schema_differences(engine) == []
    with engine.connect() as conn:
        current = set(conn.scalars(text("SELECT version_num FROM alembic_version")))
    # Every branch is at its newest revision.
    assert current == set(ScriptDirectory.from_config(alembic_config(scratch_url)).get_heads())


def test_a_database_migrated_before_the_window_index_was_added_gets_it(
    scratch_url: str, engine: Engine
) -> None:
    # ix_jobs_window_tenant was added to 0015_faults after it had landed: a database migrated
    # in between is at a later revision without it, and 0015b_faults_index creates it.
    config = alembic_config(scratch_url)
    before = ScriptDirectory.from_config(config).get_revision("0015b_faults_index").down_revision
    assert isinstance(before, str)
    command.upgrade(config, before)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_jobs_window_tenant"))

    migrate(scratch_url)

    indexes = {ix["name"] for ix in inspect(engine).get_indexes("jobs")}
    assert {"ix_jobs_window_tenant", "ix_jobs_queued_tenant"} <= indexes
    assert schema_differences(engine) == []
