"""What a request is cached under: its exact key, its semantic scope, and its text.

Scope is tenant, model tier, instruction, system prompt, a conversation's earlier turns,
output limit and temperature, so an
answer is only reused for the same question asked the same way by the same tenant (the
tenant is a column beside the key, not part of it).
"""

from __future__ import annotations

import hashlib
import json

from app.kit.prompts import (
    CacheableRequest,
    ChatMessage,
    Request,
    instruction_text,
    user_content,
)
from app.kit.text import normalise
from app.models import CacheMode

PROMPT, DOCUMENT = "prompt", "document"


def cache_key(job: Request, *, tier: str) -> str:
    """Key for ``job`` routed to a model of ``tier`` (the tenant is a column beside it)."""
    scope: dict[str, object] = {
        "tier": tier,
        "system": normalise(job.system) if job.system else None,
        "max_output_tokens": job.max_output_tokens,
        "text": normalise(user_content(job)),
    }
    if job.temperature is not None:
        scope["temperature"] = round(job.temperature, 4)
    if job.history:
        scope["history"] = _history(job.history)
    return hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()


def _history(history: list[ChatMessage]) -> list[list[str]]:
    """A conversation's earlier turns as the scope holds them (added only when there are
    some, so the keys of single-turn requests stay what they were)."""
    return [[m["role"], normalise(m["content"])] for m in history]


def kind_of(job: Request) -> str:
    return DOCUMENT if job.document is not None else PROMPT


def scope_key(job: Request, *, tier: str) -> str:
    """The scope without the request text: semantic lookups compare only within one scope."""
    scope: dict[str, object] = {
        "kind": kind_of(job),
        "tier": tier,
        "instruction": (
            normalise(instruction_text(job.instruction or "")) if job.document is not None else None
        ),
        "system": normalise(job.system) if job.system else None,
        "max_output_tokens": job.max_output_tokens,
        "temperature": round(job.temperature, 4) if job.temperature is not None else None,
    }
    if job.history:
        scope["history"] = _history(job.history)
    return hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()


def request_text(*, prompt: str | None, document: str | None) -> str:
    """What is embedded and verified: the document (its instruction is in the scope) or prompt."""
    return normalise(document if document is not None else (prompt or ""))


def semantic_allowed(job: CacheableRequest) -> bool:
    """Sampling (temperature > 0) asks for variety: no semantic reuse unless opted in."""
    if job.cache_mode != CacheMode.default or job.semantic_cache is False:
        return False
    return bool(job.semantic_cache) or not job.temperature
