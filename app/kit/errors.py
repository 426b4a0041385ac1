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

    def __init__(
        self,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class BadRequest(ThriftyError):
    status_code = 400
    type = "bad_request"


class ValidationFailed(ThriftyError):
    status_code = 422
    type = "validation_error"


class Unauthorized(ThriftyError):
    status_code = 401
    type = "unauthorized"


class Forbidden(ThriftyError):
    status_code = 403
    type = "forbidden"


class NotFound(ThriftyError):
    status_code = 404
    type = "not_found"


class PayloadTooLarge(ThriftyError):
    status_code = 413
    type = "payload_too_large"


class Conflict(ThriftyError):
    status_code = 409
    type = "conflict"


class IdempotencyConflict(ThriftyError):
    status_code = 409
    type = "idempotency_conflict"


class UnsupportedMediaType(ThriftyError):
    status_code = 415
    type = "unsupported_media_type"


class TooManyRequests(ThriftyError):
    """429 with ``Retry-After`` (whole seconds) in the headers and the body's details."""

    status_code = 429
    type = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, type_: str | None = None) -> None:
        retry_after = max(1, retry_after)
        super().__init__(
            message,
            details=[{"retry_after": retry_after}],
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after
        if type_ is not None:
            self.type = type_


# What any endpoint may answer besides its success: bad JSON, no key, a missing scope, not
# found, a conflict, too large, not JSON, invalid, rate limited.
API_ERROR_CODES = (400, 401, 403, 404, 409, 413, 415, 422, 429)


class ServiceUnavailable(ThriftyError):
    """503 with ``Retry-After``: a dependency (Postgres) is down; the request may be sent
    again unchanged once it is back."""

    status_code = 503
    type = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(
            message,
            details=[{"retry_after": retry_after}],
            headers={"Retry-After": str(retry_after)},
        )


# Seconds a client waits before trying again while the database is unreachable.
DATABASE_RETRY_AFTER = 5


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the database is unavailable; nothing was changed, retry later",
        retry_after=DATABASE_RETRY_AFTER,
    )


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for an endpoint's error statuses, all in the one error schema."""
    return {code: {"model": ErrorResponse} for code in codes}
