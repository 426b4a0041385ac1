"""The flags of ``thrifty simulator``: one per setting, defaults from the settings or from
``THRIFTY_SIMULATOR_<FLAG>``, a flag given on the command line wins."""

from __future__ import annotations

import dataclasses

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from app.cli.simulator import app as simulator_app
from app.simulator import server
from app.simulator.common import SimulatorSettings


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, int, SimulatorSettings]:
    served: list[tuple[str, int, SimulatorSettings]] = []
    monkeypatch.setattr(server, "serve", lambda *args: served.append(args))
    result = CliRunner().invoke(simulator_app, argv)
    assert result.exit_code == 0, result.output
    return served[0]


def test_every_setting_has_a_flag() -> None:
    names = {param.name for param in get_command(simulator_app).params}
    assert names - {"host", "port", "install_completion", "show_completion"} == {
        f.name for f in dataclasses.fields(SimulatorSettings)
    }


def test_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["host", *(f.name for f in dataclasses.fields(SimulatorSettings))]:
        monkeypatch.delenv(f"THRIFTY_SIMULATOR_{name.upper()}", raising=False)
    assert _run([], monkeypatch) == ("127.0.0.1", 8100, SimulatorSettings())


def test_environment_sets_defaults_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_SIMULATOR_HOST", "0.0.0.0")
    monkeypatch.setenv("THRIFTY_SIMULATOR_ERROR_RATE", "0.25")
    monkeypatch.setenv("THRIFTY_SIMULATOR_SEED", "7")
    host, _, settings = _run(["--seed", "9", "--expire-after-seconds", "30"], monkeypatch)
    assert host == "0.0.0.0"
    assert (settings.error_rate, settings.seed, settings.expire_after_seconds) == (0.25, 9, 30.0)
