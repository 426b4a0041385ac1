"""Flower, closed: ``python -m app.stack.flower [flower options]``.

Flower's basic auth leaves ``/metrics`` (every task's name and counts) and ``/healthcheck``
open; here they need the same login as the rest. There is no default password: outside
development ``THRIFTY_FLOWER_PASSWORD`` must be set (the embedded stack makes a random one
for development), else Flower does not start.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import tornado.web

from app.config import WEAK_FLOWER_PASSWORDS, get_settings


def close_open_endpoints() -> None:
    """Put ``/metrics`` and ``/healthcheck`` behind Flower's authentication."""
    from flower.views import monitor

    for handler in (monitor.Metrics, monitor.Healthcheck):
        if not getattr(handler.get, "__thrifty_closed__", False):
            closed = tornado.web.authenticated(handler.get)
            closed.__thrifty_closed__ = True  # type: ignore[attr-defined]
            handler.get = closed


def main(argv: Sequence[str]) -> int:
    settings = get_settings()
    password = settings.flower_password
    if not password or password in WEAK_FLOWER_PASSWORDS:
        print(
            "thrifty: set THRIFTY_FLOWER_PASSWORD (Flower has no default password)",
            file=sys.stderr,
        )
        return 2
    close_open_endpoints()
    from celery.bin.celery import main as celery

    sys.argv = [
        "celery",
        "-A",
        "workers.celery_app",
        "flower",
        f"--basic-auth={settings.flower_user}:{password}",
        *argv,
    ]
    celery()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
