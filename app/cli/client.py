"""The CLI's HTTP client: the same API a user's backend calls.

``THRIFTY_API_URL`` and ``THRIFTY_API_KEY``; unset, the embedded stack's (``thrifty up``):
``http://127.0.0.1:$THRIFTY_API_PORT`` and the key in ``$THRIFTY_HOME/dev-api-key``.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from app.config import get_settings


class ApiError(Exception):
    """An answer in the API's error schema (or no answer)."""

    def __init__(self, message: str, *, status: int | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details


def api_url() -> str:
    url = os.environ.get("THRIFTY_API_URL")
    return (url or f"http://127.0.0.1:{get_settings().api_port}").rstrip("/")


def api_key() -> str:
    key = os.environ.get("THRIFTY_API_KEY")
    if key:
        return key
    path = get_settings().home / "dev-api-key"
    if path.is_file():
        return path.read_text().strip()
    raise ApiError(f"no API key: set THRIFTY_API_KEY (or start the stack: {path} is missing)")


def client(*, timeout: float = 120.0) -> httpx.Client:
    return httpx.Client(
        base_url=api_url(),
        headers={"Authorization": f"Bearer {api_key()}"},
        timeout=timeout,
    )


def call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """The JSON answer of ``method path``; raises ``ApiError`` with the API's message."""
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach the API at {http.base_url}: {exc}") from None
    if response.is_success:
        return response.json()
    try:
        error = response.json()["error"]
        message, details = error["message"], error.get("details")
    except (ValueError, KeyError, TypeError):
        message, details = response.text[:200] or response.reason_phrase, None
    raise ApiError(f"HTTP {response.status_code}: {message}", status=response.status_code,
                   details=details)  # fmt: skip
