"""An OpenAI chat completions request body as a Thrifty job, or the reason it cannot be one.

Every field is honoured or refused, never dropped: ``model`` (``"auto"``: the router; a
catalog model's name pins it; an alias in the catalog maps a name to a policy per tenant),
``messages`` (system and developer messages first, then the conversation: all of it is the
cache scope), ``max_tokens`` / ``max_completion_tokens``, ``temperature``, ``user`` and
``metadata`` (kept in the job's metadata), and the no-op values of a few others (``n: 1``,
``stream: false``, ``top_p: 1``, penalties of 0, ``stop: null``). Anything else is refused
with its name. ``stream`` (and ``stream_options.include_usage``) are honoured by
``/v1/chat/completions`` only: a batch line cannot stream, as at OpenAI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.catalog.catalog import Catalog
from app.jobs.schemas import JobIn
from app.models import RequestedMode

AUTO = "auto"
# Fields whose value is honoured only when it asks for nothing (OpenAI's defaults).
_NO_OP: dict[str, tuple[object, ...]] = {
    "n": (1,),
    "stream": (False,),
    "top_p": (1, 1.0),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "stop": (None,),
    "logprobs": (False,),
    "parallel_tool_calls": (None,),
    "store": (False,),
}
_HONOURED = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "user",
    "metadata",
}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class LineError:
    """Why a request was refused, as OpenAI's error object has it."""

    code: str
    message: str
    param: str | None = None


def resolve_model(catalog: Catalog, *, name: object, tenant: str) -> tuple[str | None, str | None]:
    """``(model, tier)`` hints for a requested model name; raises ``LookupError``."""
    if not isinstance(name, str) or not name:
        raise LookupError('`model` must be a model name, or "auto" to let Thrifty choose')
    if name == AUTO:
        return None, None
    target = catalog.alias(name, tenant=tenant)
    if target is not None:
        return target.model, target.tier
    if catalog.has_model(name):
        return name, None
    raise LookupError(
        f'The model `{name}` does not exist in this Thrifty\'s catalog: use "auto", a '
        "catalog model or an alias"
    )


def _content(value: object, where: str) -> str | LineError:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str) or len(part) != 2:
                return LineError(
                    "unsupported_content",
                    f"{where}.content[{index}]: only text parts are supported, got {kind!r}",
                    f"{where}.content",
                )
            texts.append(part["text"])
        return "\n".join(texts)
    return LineError("invalid_value", f"{where}.content must be a string", f"{where}.content")


def _messages(value: object) -> list[dict[str, str]] | LineError:
    if not isinstance(value, list) or not value:
        return LineError("invalid_value", "`messages` must be a non-empty list", "messages")
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            return LineError("invalid_value", f"{where} must be an object", where)
        role = message.get("role")
        if role not in _ROLES:
            return LineError(
                "unsupported_value",
                f"{where}.role {role!r} is not supported (system, developer, user, assistant)",
                f"{where}.role",
            )
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            return LineError(
                "unsupported_parameter",
                f"{where}.{extra[0]} is not supported by Thrifty; remove it",
                f"{where}.{extra[0]}",
            )
        content = _content(message.get("content"), where)
        if isinstance(content, LineError):
            return content
        messages.append({"role": _ROLES[role], "content": content})
    return messages


def stream_options(body: dict[str, Any]) -> tuple[bool, bool] | LineError:
    """``(stream, include_usage)`` as a chat completions request asks for them."""
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        return LineError("invalid_value", "`stream` must be a boolean", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        return LineError(
            "invalid_value",
            "`stream_options` is only allowed with `stream: true`",
            "stream_options",
        )
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        return LineError(
            "unsupported_parameter",
            "`stream_options` takes only `include_usage` in Thrifty",
            "stream_options",
        )
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        return LineError(
            "invalid_value", "`stream_options.include_usage` must be a boolean", "stream_options"
        )
    return True, include


def to_job(
    body: object,
    *,
    catalog: Catalog,
    tenant: str,
    mode: RequestedMode,
    streaming: bool = False,
) -> JobIn | LineError:
    """The job a chat completions request body asks for, or why it cannot be one;
    ``streaming`` lets ``stream`` / ``stream_options`` through (checked by
    ``stream_options``)."""
    if not isinstance(body, dict):
        return LineError("invalid_request", "the request body must be a JSON object")
    for field in sorted(body):
        if field in _HONOURED or (streaming and field in ("stream", "stream_options")):
            continue
        allowed = _NO_OP.get(field, ())
        if any(body[field] == v and type(body[field]) is type(v) for v in allowed):
            continue
        return LineError(
            "unsupported_parameter",
            f"`{field}` is not supported by Thrifty"
            + (f" (only {_NO_OP[field][0]!r})" if field in _NO_OP else "")
            + "; remove it: Thrifty refuses what it would otherwise ignore",
            field,
        )
    try:
        model, tier = resolve_model(catalog, name=body.get("model"), tenant=tenant)
    except LookupError as exc:
        return LineError("model_not_found", str(exc), "model")
    messages = _messages(body.get("messages"))
    if isinstance(messages, LineError):
        return messages
    limits = {body[k] for k in ("max_tokens", "max_completion_tokens") if body.get(k) is not None}
    if len(limits) > 1:
        return LineError(
            "invalid_value", "`max_tokens` and `max_completion_tokens` differ", "max_tokens"
        )
    metadata: dict[str, Any] = {}
    if body.get("metadata") is not None:
        if not isinstance(body["metadata"], dict):
            return LineError("invalid_value", "`metadata` must be an object", "metadata")
        metadata.update(body["metadata"])
    if body.get("user") is not None:
        metadata["user"] = body["user"]
    temperature = body.get("temperature")
    job: dict[str, Any] = {
        "messages": messages,
        "model": model,
        "tier": tier,
        "max_output_tokens": limits.pop() if limits else None,
        "temperature": float(temperature)
        if isinstance(temperature, int | float) and not isinstance(temperature, bool)
        else temperature,
        "metadata": metadata,
        "mode": mode,
    }
    try:
        return JobIn.model_validate(job)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = [str(part) for part in first["loc"]]
        param = {"max_output_tokens": "max_tokens"}.get(loc[0], loc[0]) if loc else None
        where = ".".join([param or "", *loc[1:]]) if loc else "body"
        message = first["msg"].removeprefix("Value error, ")
        return LineError("invalid_value", f"{where}: {message}", param)
