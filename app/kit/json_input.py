"""Every JSON request body, parsed strictly before any endpoint sees it.

Refused, with the field named: strings Postgres cannot store (NUL, lone surrogates), in
keys as in values; numbers outside what is stored and returned unchanged (integers beyond
64 bits, ``NaN``, ``Infinity``, floats that overflow such as ``1e400``); nesting deeper
than ``MAX_DEPTH``. Malformed JSON (or a body that is not UTF-8) is 400, everywhere; a body
in another media type is 415. Routers use ``StrictJSONRoute`` (``APIRouter(route_class=...)``),
so FastAPI's own parsing finds the body already parsed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.kit.errors import BadRequest, UnsupportedMediaType, ValidationFailed

MAX_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)
# Only these escapes can put a NUL or a lone surrogate into a string: raw control
# characters are invalid JSON, and a surrogate encoded raw is invalid UTF-8.
_SUSPECT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


class _OutOfRange:
    """A number parsed but not storable; found (with its path) by the walk."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_int(text: str) -> int | _OutOfRange:
    value = int(text)
    return value if _INT64[0] <= value <= _INT64[1] else _OutOfRange(text)


def _parse_float(text: str) -> float | _OutOfRange:
    # Postgres writes a JSONB number without exponent, so 1e300 would read back as a
    # 301-digit integer: floats share the integers' 64-bit range.
    value = float(text)
    return value if math.isfinite(value) and abs(value) < 2.0**63 else _OutOfRange(text)


def _where(path: list[str | int]) -> str:
    where = ""
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else part)
    return where or "body"


def _refuse(path: list[str | int], message: str, type_: str) -> ValidationFailed:
    loc: list[str | int] = ["body", *path]
    return ValidationFailed(
        f"{_where(path)}: {message}", details=[{"loc": loc, "message": message, "type": type_}]
    )


def _check_string(value: str, path: list[str | int], *, key: bool = False) -> None:
    found = _BAD_CHARS.search(value)
    if found is None:
        return
    what = "a key " if key else ""
    if found.group() == "\x00":
        raise _refuse(path, f"{what}contains a NUL character (\\u0000)", "string_nul")
    raise _refuse(
        path, f"{what}contains a lone surrogate (unpaired \\uD800-\\uDFFF)", "string_surrogate"
    )


def _walk(document: Any, *, check_strings: bool) -> None:
    """Refuse unstorable numbers, too-deep nesting and (when the body may hold them) bad
    strings; iterative, so no depth of input can exhaust the stack."""
    stack: list[tuple[Any, list[str | int]]] = [(document, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            if len(path) >= MAX_DEPTH:
                raise _refuse(path, f"nested deeper than {MAX_DEPTH} levels", "too_deep")
            for key, item in value.items():
                if check_strings:
                    _check_string(key, path, key=True)
                stack.append((item, [*path, key]))
        elif isinstance(value, list):
            if len(path) >= MAX_DEPTH:
                raise _refuse(path, f"nested deeper than {MAX_DEPTH} levels", "too_deep")
            stack.extend((item, [*path, index]) for index, item in enumerate(value))
        elif isinstance(value, str):
            if check_strings:
                _check_string(value, path)
        elif isinstance(value, _OutOfRange):
            raise _refuse(
                path,
                f"number {value.text[:40]} is out of range (finite, within ±2^63)",
                "number_out_of_range",
            )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> Any:
    """The body as Python values, or a 400 (malformed) / 422 (unstorable values) error."""
    try:
        text = body.decode("utf-8")
        document = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_no_constants,
        )
    except UnicodeDecodeError as exc:
        raise BadRequest(f"malformed JSON: the body is not UTF-8 ({exc.reason})") from exc
    except RecursionError as exc:
        raise ValidationFailed(f"body: nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        # JSONDecodeError, NaN/Infinity, an integer of more digits than Python converts.
        raise BadRequest(f"malformed JSON: {exc}") from exc
    _walk(document, check_strings=_SUSPECT.search(text) is not None)
    return document


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


async def read_json(request: Request) -> Any:
    """The request's JSON body (parsed once, strictly); 415 for another media type."""
    if not hasattr(request, "_json"):
        body = await request.body()
        if not is_json(request.headers.get("content-type")):
            raise UnsupportedMediaType("send the body as `Content-Type: application/json`")
        # Starlette's Request.json() returns this, so FastAPI does not parse again.
        request._json = parse_json(body)
    return request._json


def query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route takes, its dependencies' included."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(param.alias for param in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(names)


def check_query(request: Request, known: frozenset[str]) -> None:
    """Refuse a query parameter the endpoint does not take (a typo such as ``limt=5`` would
    otherwise be ignored without a word)."""
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise ValidationFailed(
            f"unknown query parameter {unknown[0]!r}; this endpoint takes: {takes}",
            details=[
                {"loc": ["query", name], "message": "unknown parameter", "type": "extra_forbidden"}
                for name in unknown
            ],
        )


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is parsed by ``parse_json`` (and refused in other media types)
    and whose query holds only the parameters it declares."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known = query_names(self.dependant)

        async def strict(request: Request) -> Response:
            check_query(request, known)
            if request.method in ("POST", "PUT", "PATCH") and await request.body():
                await read_json(request)
            return await handler(request)

        return strict


class MultipartRoute(StrictJSONRoute):
    """A route that takes a ``multipart/form-data`` body (a file upload) and nothing else;
    the endpoint parses the form itself (Starlette's parser spools files to disk), so the
    body is never read into memory whole."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = APIRoute.get_route_handler(self)
        known = query_names(self.dependant)

        async def multipart(request: Request) -> Response:
            check_query(request, known)
            media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
            if request.method == "POST" and media != "multipart/form-data":
                raise UnsupportedMediaType("send the file as `Content-Type: multipart/form-data`")
            return await handler(request)

        return multipart
