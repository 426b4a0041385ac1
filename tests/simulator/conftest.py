"""Simulator processes with chosen flags (shared with the provider tests)."""

from tests.providers.conftest import sim, start_simulator

__all__ = ["sim", "start_simulator"]
