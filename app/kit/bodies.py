"""Bounded memory for request bodies: a size limit, streamed, and few large ones at once.

A body over ``max_bytes`` (``THRIFTY_MAX_BODY_BYTES``) is refused with 413 as soon as it
is declared (``Content-Length``) or, streamed, grows past it: never read whole first. But
six 60 MiB bodies within the limit, parsed at once, still take gigabytes; so a request
whose body is over
``large_bytes`` waits for one of ``slots`` places before its body is read further, and
keeps it until its response is sent. One that waits longer than ``wait_seconds`` is
answered 429 with ``Retry-After``.

Upload paths (``POST /v1/files``: multipart, streamed to disk by the form parser, then to
Postgres a part at a time) may send up to ``max_file_bytes`` plus room for the multipart
framing instead; they take a large-body place like any other large body.
"""

from __future__ import annotations

import asyncio
import weakref

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import get_settings
from app.kit.errors import ErrorBody, ErrorResponse, PayloadTooLarge, TooManyRequests

# Room for an upload's multipart framing and form fields beyond the file itself.
MULTIPART_SLACK_BYTES = 1024 * 1024


class BodyLimits:
    """The limits are read from the settings on each request."""

    def __init__(self, app: ASGIApp, *, upload_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.upload_paths = upload_paths
        # One semaphore per event loop (tests run several loops in one process).
        self._semaphores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            slots = get_settings().max_large_bodies
            semaphore = self._semaphores[loop] = asyncio.Semaphore(slots)
        return semaphore

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        max_bytes, large_bytes = settings.max_body_bytes, settings.large_body_bytes
        if scope["method"] == "POST" and scope["path"] in self.upload_paths:
            max_bytes = settings.max_file_bytes + MULTIPART_SLACK_BYTES
        wait_seconds = settings.large_body_wait_seconds
        declared_header = Headers(scope=scope).get("content-length")
        declared = int(declared_header) if declared_header and declared_header.isdigit() else 0
        if declared > max_bytes:
            await self._too_large(scope, receive, send, max_bytes)
            return
        large = declared > large_bytes
        semaphore = self._semaphore()
        held = False
        seen = 0

        async def acquire() -> None:
            nonlocal held
            try:
                await asyncio.wait_for(semaphore.acquire(), timeout=wait_seconds)
            except TimeoutError as exc:
                raise TooManyRequests(
                    "too many large requests in flight; retry later",
                    retry_after=max(1, round(wait_seconds)),
                    type_="server_busy",
                ) from exc
            held = True

        async def gated_receive() -> Message:
            nonlocal seen
            if large and not held:
                await acquire()
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise PayloadTooLarge(self._message(max_bytes))
            if seen > large_bytes and not held:
                await acquire()
            return message

        try:
            await self.app(scope, gated_receive, send)
        finally:
            if held:
                semaphore.release()

    def _message(self, max_bytes: int) -> str:
        return f"request body is over the {max_bytes}-byte limit"

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        message = self._message(max_bytes)
        error = ErrorResponse(error=ErrorBody(type=PayloadTooLarge.type, message=message))
        response = JSONResponse(error.model_dump(mode="json"), status_code=413)
        await response(scope, receive, send)
