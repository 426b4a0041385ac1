"""One error schema for every 4xx/5xx the API returns."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    type: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody


class ThriftyError(Exception):
    """Base for expected failures; carries the HTTP status and a stable type."""

    status_code = 400
    type = "bad_request"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(ThriftyError):
    status_code = 400
    type = "bad_request"


class ValidationFailed(ThriftyError):
    status_code = 422
    type = "validation_error"


class Unauthorized(ThriftyError):
    status_code = 401
    type = "unauthorized"


class NotFound(ThriftyError):
    status_code = 404
    type = "not_found"


class PayloadTooLarge(ThriftyError):
    status_code = 413
    type = "payload_too_large"


class Conflict(ThriftyError):
    status_code = 409
    type = "conflict"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for an endpoint's error statuses, all in the one error schema."""
    return {code: {"model": ErrorResponse} for code in codes}
