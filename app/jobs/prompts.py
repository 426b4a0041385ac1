"""How a job becomes chat messages: named instructions expand to templates."""

from __future__ import annotations

from typing import TypedDict

from app.models import Job

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


def instruction_text(instruction: str) -> str:
    return INSTRUCTION_TEMPLATES.get(instruction.strip().lower(), instruction)


def user_content(job: Job) -> str:
    if job.document is not None:
        return f"{instruction_text(job.instruction or DEFAULT_INSTRUCTION)}\n\n{job.document}"
    return job.prompt or ""


def build_messages(job: Job) -> list[ChatMessage]:
    """The chat messages sent to the provider for ``job``."""
    messages: list[ChatMessage] = []
    if job.system:
        messages.append({"role": "system", "content": job.system})
    messages.append({"role": "user", "content": user_content(job)})
    return messages
