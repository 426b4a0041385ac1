"""The interface every batch provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.jobs.prompts import ChatMessage


@dataclass(frozen=True)
class BatchRequest:
    custom_id: str
    messages: list[ChatMessage]
    max_tokens: int | None


@dataclass(frozen=True)
class BatchHandle:
    """What the provider gave back when it accepted a batch."""

    external_id: str
    input_file_id: str | None
    status: str


@dataclass(frozen=True)
class BatchStatus:
    external_id: str
    status: str
    # True once the provider will not change the batch any more.
    ended: bool
    output_file_id: str | None
    error_file_id: str | None
    error: str | None


@dataclass(frozen=True)
class BatchResult:
    """One request's outcome, matched back to its job by ``custom_id``."""

    custom_id: str
    content: str | None
    input_tokens: int
    output_tokens: int
    error: str | None


class ProviderError(Exception):
    """The provider refused or failed a call after retries.

    ``retryable`` is False when the provider rejected the request itself (a 4xx other than
    429): sending it again would fail the same way.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class BatchProvider(Protocol):
    def find_batch(self, *, reference: str) -> BatchHandle | None:
        """A live batch earlier created for ``reference`` (our batch id), if any."""
        ...

    def submit(self, *, reference: str, model: str, requests: list[BatchRequest]) -> BatchHandle:
        """Upload the requests and create a batch tagged with ``reference``."""
        ...

    def retrieve(self, external_id: str) -> BatchStatus: ...

    def results(self, status: BatchStatus) -> list[BatchResult]:
        """Every request's outcome, from the output and error files."""
        ...

    def close(self) -> None: ...
