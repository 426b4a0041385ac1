"""How a job becomes chat messages: named instructions expand to templates."""

from __future__ import annotations

import uuid
from typing import Protocol, TypedDict

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
    messages.append({"role": "user", "content": user_content(job)})
    return messages
