"""The embedded Postgres starts with the configured ``shared_buffers``
(``THRIFTY_PG_SHARED_BUFFERS``), and a bad value is refused when the settings load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import ValidationError

from app.config import Settings, get_settings
from app.stack.postgres import EmbeddedPostgres
from tests.conftest import free_port


@pytest.fixture
def settings_from_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_the_embedded_server_starts_with_the_configured_shared_buffers(
    tmp_path: Path, settings_from_env: pytest.MonkeyPatch
) -> None:
    settings_from_env.setenv("THRIFTY_PG_SHARED_BUFFERS", "48MB")
    get_settings.cache_clear()
    postgres = EmbeddedPostgres(tmp_path / "pgdata", free_port())
    postgres.start()
    try:
        with psycopg.connect(
            host=postgres.host, port=postgres.port, user="postgres", dbname="postgres"
        ) as conn:
            row = conn.execute("SHOW shared_buffers").fetchone()
        assert row is not None
        assert row[0] == "48MB"
    finally:
        postgres.stop()


@pytest.mark.parametrize("value", ["1 GB", "lots", "0MB", "1TB"])
def test_a_bad_shared_buffers_is_refused_naming_the_field(value: str) -> None:
    with pytest.raises(ValidationError, match="pg_shared_buffers"):
        Settings(pg_shared_buffers=value)
