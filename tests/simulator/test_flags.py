"""The flags of ``thrifty simulator``: one per setting, defaults from the settings or from
``THRIFTY_SIMULATOR_<FLAG>``."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from app.simulator.common import SimulatorSettings
from app.simulator.flags import FLAGS, add_arguments, settings_from_args


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser, default_port=8100)
    return parser.parse_args(argv)


def test_every_setting_has_a_flag() -> None:
    assert {name for name, _, _ in FLAGS} == {
        field.name for field in dataclasses.fields(SimulatorSettings)
    }


def test_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _, _ in FLAGS:
        monkeypatch.delenv(f"THRIFTY_SIMULATOR_{name.upper()}", raising=False)
    monkeypatch.delenv("THRIFTY_SIMULATOR_HOST", raising=False)
    args = _parse([])
    assert (args.host, args.port) == ("127.0.0.1", 8100)
    assert settings_from_args(args) == SimulatorSettings()


def test_environment_sets_defaults_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_SIMULATOR_HOST", "0.0.0.0")
    monkeypatch.setenv("THRIFTY_SIMULATOR_ERROR_RATE", "0.25")
    monkeypatch.setenv("THRIFTY_SIMULATOR_SEED", "7")
    args = _parse(["--seed", "9", "--expire-after-seconds", "30"])
    settings = settings_from_args(args)
    assert args.host == "0.0.0.0"
    assert (settings.error_rate, settings.seed, settings.expire_after_seconds) == (0.25, 9, 30.0)
