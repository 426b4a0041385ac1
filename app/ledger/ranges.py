"""The time range of a stats request: absolute ISO 8601 times or relative ones (``24h``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pydantic import TypeAdapter, ValidationError

from app.kit.errors import ValidationFailed

DEFAULT_RANGE = timedelta(hours=24)
# Beyond this a range is refused: the answer would sum too many rollup rows to be quick.
MAX_RANGE = timedelta(days=366)
# group_by=hour answers one group per hour; at most a month of them.
MAX_HOURLY_RANGE = timedelta(days=31)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DATETIME = TypeAdapter(datetime)
# Times a range may name (hours are rounded up from them, so not datetime.max).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def parse_moment(value: str, *, name: str, now: datetime) -> datetime:
    """``value`` as an aware UTC datetime: ISO 8601 (naive means UTC), a Unix time, or a
    duration before now (``90m``, ``24h``, ``7d``)."""
    match = _RELATIVE.match(value)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        if seconds > MAX_RANGE.total_seconds() * 10:
            raise ValidationFailed(f"{name}: {value!r} is too far back", details=_at(name))
        return now - timedelta(seconds=seconds)
    try:
        moment = _DATETIME.validate_python(value.strip())
    except ValidationError as exc:
        raise ValidationFailed(
            f"{name}: {value!r} is not a time (ISO 8601 like 2026-12-01T10:00:00Z, a Unix "
            "time, or a duration before now like 24h)",
            details=_at(name, exc.errors()[0]["msg"]),
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not EARLIEST <= moment <= LATEST:
        raise ValidationFailed(
            f"{name}: {value!r} is outside {EARLIEST.year}-{LATEST.year}",
            details=_at(name, "time out of range"),
        )
    return moment


def _at(name: str, message: str = "invalid time") -> list[dict[str, object]]:
    return [{"loc": ["query", name], "message": message, "type": "value_error"}]


def resolve(
    since: str | None, until: str | None, *, group_by: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """The range ``[since, until)``, checked: in order, and not too large to answer."""
    end = parse_moment(until, name="until", now=now) if until else now
    start = parse_moment(since, name="since", now=now) if since else end - DEFAULT_RANGE
    if start >= end:
        raise ValidationFailed(
            f"since ({start.isoformat()}) must be before until ({end.isoformat()})",
            details=_at("since", "since is not before until"),
        )
    limit = MAX_HOURLY_RANGE if group_by == "hour" else MAX_RANGE
    if end - start > limit:
        raise ValidationFailed(
            f"the range is too large: at most {limit.days} days"
            + (" with group_by=hour" if group_by == "hour" else ""),
            details=_at("since", "range too large"),
        )
    return start.astimezone(UTC), end.astimezone(UTC)
