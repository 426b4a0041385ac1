"""The simulator's argparse flags: ``thrifty simulator`` and ``python -m app.simulator.server``.

Every setting of ``SimulatorSettings`` is a flag whose default is read from
``THRIFTY_SIMULATOR_<FLAG>`` when set, so the simulator that ``thrifty up`` starts can be
configured from the environment; ``--host`` reads ``THRIFTY_SIMULATOR_HOST``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from app.simulator.common import SimulatorSettings

# (flag, type, help) of every setting.
FLAGS: list[tuple[str, type, str]] = [
    ("validating_seconds", float, "how long a batch stays validating"),
    ("processing_seconds", float, "batch processing time"),
    ("finalizing_seconds", float, "how long a finished batch stays finalizing"),
    ("cancelling_seconds", float, "how long a cancelled batch stays cancelling"),
    ("expire_after_seconds", float, "unfinished batches expire this long after creation "
     "(default: the 24 h completion window)"),
    ("latency_seconds", float, "delay added to every API call"),
    ("error_rate", float, "share of requests (batch lines, realtime calls) answered 400"),
    ("rate_limit_rate", float, "share of API calls answered 429"),
    ("server_error_rate", float, "share of API calls answered 500"),
    ("retry_after_seconds", float, "retry-after sent with injected 429s"),
    ("embedding_dimensions", int, "embedding size when a request gives none"),
    ("seed", int, "seed for output order and injected failures"),
]  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    """Add ``--host``, ``--port`` and one flag per setting to ``parser``."""
    defaults = SimulatorSettings()
    parser.add_argument("--host", default=os.environ.get("THRIFTY_SIMULATOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=default_port)
    for name, kind, help_text in FLAGS:
        env = f"THRIFTY_SIMULATOR_{name.upper()}"
        default = os.environ.get(env)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=kind(default) if default else getattr(defaults, name),
            help=f"{help_text} (env {env})",
        )


def settings_from_args(args: argparse.Namespace) -> SimulatorSettings:
    """The settings that the flags of ``add_arguments`` describe."""
    return SimulatorSettings(**{name: getattr(args, name) for name, _, _ in FLAGS})


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``python -m app.simulator.server --port 8001``."""
    # Imported here: server re-exports this module's names, so a top-level import would cycle.
    from app.simulator.server import serve

    parser = argparse.ArgumentParser(description="Run the provider simulator.")
    add_arguments(parser, default_port=8001)
    args = parser.parse_args(argv)
    serve(args.host, args.port, settings_from_args(args))
