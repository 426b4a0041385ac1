"""How a job becomes chat messages: named instructions expand to templates.

A job sent as chat ``messages`` is stored as its leading system messages (``system``), the
last user message (``prompt``) and the turns between them (``history``), so routing, the
cache and the estimates see the question itself while the provider gets the whole
conversation, in order.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Protocol, TypedDict

from app.kit.text import estimate_tokens

# Named instructions a client can pass as `instruction`; anything else is used verbatim.
INSTRUCTION_TEMPLATES: dict[str, str] = {
    "summarise": "Summarise the following document in two or three sentences.",
    "summarize": "Summarise the following document in two or three sentences.",
    "summary": "Summarise the following document in two or three sentences.",
    "tldr": "Give a one-sentence summary of the following document.",
    "headline": "Write a headline for the following document.",
    "keywords": "List five keywords for the following document.",
}
DEFAULT_INSTRUCTION = "summarise"


class ChatMessage(TypedDict):
    role: str
    content: str


class Request(Protocol):
    """What a request to a model is made of: a job row, or a lighter copy of its inputs."""

    @property
    def prompt(self) -> str | None: ...
    @property
    def document(self) -> str | None: ...
    @property
    def instruction(self) -> str | None: ...
    @property
    def system(self) -> str | None: ...
    @property
    def max_output_tokens(self) -> int | None: ...
    @property
    def temperature(self) -> float | None: ...
    @property
    def history(self) -> list[ChatMessage] | None: ...


class CacheableRequest(Request, Protocol):
    """A request with what the cache needs to look it up: its tenant and cache controls."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def tenant_id(self) -> uuid.UUID: ...
    @property
    def cache_mode(self) -> str: ...
    @property
    def semantic_cache(self) -> bool | None: ...


def instruction_text(instruction: str) -> str:
    return INSTRUCTION_TEMPLATES.get(instruction.strip().lower(), instruction)


def user_content(job: Request) -> str:
    if job.document is not None:
        return f"{instruction_text(job.instruction or DEFAULT_INSTRUCTION)}\n\n{job.document}"
    return job.prompt or ""


def build_messages(job: Request) -> list[ChatMessage]:
    """The chat messages sent to the provider for ``job``."""
    messages: list[ChatMessage] = []
    if job.system:
        messages.append({"role": "system", "content": job.system})
    messages.extend(job.history or ())
    messages.append({"role": "user", "content": user_content(job)})
    return messages


def history_text(history: list[ChatMessage] | None) -> str:
    """The earlier turns of a conversation as one text (for estimates)."""
    return "\n".join(m["content"] for m in history or ())


def split_messages(
    messages: list[ChatMessage],
) -> tuple[str | None, list[ChatMessage] | None, str]:
    """A conversation as (system, history, prompt): the leading system messages joined, the
    turns between them and the last message, and the last (user) message's text."""
    lead = 0
    while lead < len(messages) and messages[lead]["role"] == "system":
        lead += 1
    system = "\n\n".join(m["content"] for m in messages[:lead]) or None
    history = [ChatMessage(role=m["role"], content=m["content"]) for m in messages[lead:-1]]
    return system, history or None, messages[-1]["content"]


@dataclass(frozen=True, slots=True)
class PromptPrefix:
    """The part of a request that other requests may share, sent first and byte for byte the
    same: the system prompt, earlier turns and, for a document job, its instruction (the start
    of the last user message). ``key`` is a hash of it (OpenAI's ``prompt_cache_key``, the
    simulator's cache key); ``tokens`` an estimate of its length; ``instruction`` the text
    the last user message opens with, when the prefix reaches into it."""

    key: str
    tokens: int
    instruction: str | None


def prompt_prefix(job: Request) -> PromptPrefix | None:
    """The shareable prefix of ``job``'s request; None when it has none (a bare prompt)."""
    lead = build_messages(job)[:-1]
    instruction = None
    if job.document is not None:
        instruction = f"{instruction_text(job.instruction or DEFAULT_INSTRUCTION)}\n\n"
    if not lead and instruction is None:
        return None
    text = "".join(m["content"] for m in lead) + (instruction or "")
    digest = hashlib.sha256(
        json.dumps([lead, instruction], ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()
    return PromptPrefix(f"thrifty-{digest[:32]}", estimate_tokens(text), instruction)
