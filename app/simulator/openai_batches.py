"""The state behind OpenAI's Files and Batches APIs: stored files, batches and their lifecycle.

A batch's status is derived from the time since it was created: ``validating`` ->
``in_progress`` -> (``finalizing``) -> ``completed``, ``failed`` when its input file has
invalid lines, ``expired`` when it would outlast ``expire_after_seconds``, and ``cancelling``
-> ``cancelled`` once cancelled. Output lines come in a seeded order that is never the input
order (clients must match them by ``custom_id``, as with the real API).

State lives in memory and is guarded by one ``threading.Lock``: the endpoints
(``openai_routes.py``) are synchronous, so uvicorn runs them concurrently in its threadpool.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from app.simulator.common import APIError, SimulatorSettings, refusal, request_fails
from app.simulator.openai_lines import (
    BatchRequest,
    CreateBatchRequest,
    HexIds,
    error_line,
    expired_line,
    parse_batch_file,
    refused_line,
    response_line,
)
from app.simulator.wire import (
    BatchObject,
    BatchStatus,
    FileObject,
    LineError,
    ListPage,
)

_TERMINAL_STATUSES: frozenset[BatchStatus] = frozenset(
    {"completed", "failed", "cancelled", "expired"}
)


@dataclass(slots=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_json(self) -> FileObject:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass(slots=True)
class _Prepared:
    """A batch's output and error lines, computed in a thread of their own while the batch is
    in progress: the first look after it completed then only stores them."""

    created: int
    done: threading.Event
    lines: list[str]
    errors: list[str]


@dataclass(slots=True)
class Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created_wall: float
    created_monotonic: float
    expiry_seconds: float
    requests: list[BatchRequest]
    validation_errors: list[LineError]
    status: BatchStatus = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    expired_at: int | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    cancel_requested_monotonic: float | None = None
    completed_before_cancel: int = 0
    total: int = 0
    completed: int = 0
    failed: int = 0
    # The output lines computed ahead, once the batch is in progress (``Store._prepare``).
    prepared: _Prepared | None = None

    def wall(self, offset_seconds: float) -> int:
        """Unix timestamp of a moment ``offset_seconds`` after creation."""
        return int(self.created_wall + offset_seconds)

    def to_json(self) -> BatchObject:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": (
                {"object": "list", "data": list(self.validation_errors)}
                if self.status == "failed"
                else None
            ),
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created_wall),
            "in_progress_at": self.in_progress_at,
            "expires_at": self.wall(self.expiry_seconds),
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": self.expired_at,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": dict(self.metadata) if self.metadata is not None else None,
        }


class Store:
    """In-memory store of files and batches plus the batch lifecycle rules."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        self._hex = HexIds()
        self._dice = random.Random(settings.seed)

    # Files -------------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        with self.lock:
            stored = StoredFile(
                id=f"file-{self._hex(24)}",
                filename=filename,
                purpose=purpose,
                data=data,
                created_at=int(time.time()),
            )
            self.files[stored.id] = stored
            return stored

    def get_file(self, file_id: str) -> StoredFile:
        with self.lock:
            return self._file(file_id)

    def _file(self, file_id: str) -> StoredFile:
        stored = self.files.get(file_id)
        if stored is None:
            raise APIError(404, f"No such File object: {file_id}", param="id")
        return stored

    def list_files(self, purpose: str | None) -> list[StoredFile]:
        with self.lock:
            return [f for f in self.files.values() if purpose is None or f.purpose == purpose]

    def delete_file(self, file_id: str) -> None:
        with self.lock:
            self._file(file_id)
            del self.files[file_id]

    # Batches -----------------------------------------------------------------------------

    def create_batch(self, request: CreateBatchRequest) -> Batch:
        with self.lock:
            input_file = self.files.get(request.input_file_id)
            if input_file is None:
                raise APIError(
                    404,
                    f"No such File object: {request.input_file_id}",
                    param="input_file_id",
                )
            if input_file.purpose != "batch":
                raise APIError(
                    400,
                    f"File {input_file.id} has purpose '{input_file.purpose}'; "
                    "a batch input file must have purpose 'batch'.",
                    param="input_file_id",
                )
            # Parsing up front keeps GET cheap; failures surface once validation "finishes".
            requests, errors = parse_batch_file(input_file.data, request.endpoint)
            batch = Batch(
                id=f"batch_{self._hex(32)}",
                input_file_id=input_file.id,
                endpoint=request.endpoint,
                completion_window=request.completion_window,
                metadata=dict(request.metadata) if request.metadata is not None else None,
                created_wall=time.time(),
                created_monotonic=time.monotonic(),
                expiry_seconds=self._expiry(),
                requests=requests,
                validation_errors=errors,
            )
            self.batches[batch.id] = batch
            self._prepare_later(batch)
            return batch

    def _prepare_later(self, batch: Batch) -> None:
        """Answer a batch that will complete in a thread of its own, from the moment it is in
        progress, as a provider works through a batch while it runs: at zero latency the
        answers are then ready, or nearly, by the client's first poll instead of being made
        under the store's lock at that poll. A batch that fails, expires first or is
        cancelled is answered at the look that ends it, as before."""
        settings = self.settings
        processing_done = settings.validating_seconds + settings.processing_seconds
        if batch.validation_errors or processing_done > batch.expiry_seconds:
            return
        created = batch.wall(processing_done + settings.finalizing_seconds)
        batch.prepared = _Prepared(created, threading.Event(), [], [])
        worker = threading.Timer(settings.validating_seconds, self._prepare, args=(batch,))
        worker.daemon = True
        worker.start()

    def _prepare(self, batch: Batch) -> None:
        prepared = batch.prepared
        assert prepared is not None
        try:
            if batch.cancel_requested_monotonic is None:
                prepared.lines, prepared.errors = self._answer(
                    batch, self._output_order(batch.requests), prepared.created
                )
        finally:
            prepared.done.set()

    def _expiry(self) -> float:
        """The completion window of a new batch; ``expire_rate`` of them run out half-way."""
        settings = self.settings
        if settings.expire_rate and self._dice.random() < settings.expire_rate:
            return settings.validating_seconds + settings.processing_seconds / 2
        return settings.expiry_seconds

    def get_batch(self, batch_id: str) -> BatchObject:
        with self.lock:
            batch = self._batch(batch_id)
            self._advance(batch, time.monotonic())
            return batch.to_json()

    def _batch(self, batch_id: str) -> Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise APIError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def list_batches(self, limit: int, after: str | None) -> ListPage[BatchObject]:
        with self.lock:
            now = time.monotonic()
            newest_first = list(reversed(self.batches.values()))
            start = 0
            if after is not None:
                ids = [batch.id for batch in newest_first]
                if after not in ids:
                    raise APIError(400, f"Unknown pagination cursor '{after}'.", param="after")
                start = ids.index(after) + 1
            page = newest_first[start : start + limit]
            for batch in page:
                self._advance(batch, now)
            data = [batch.to_json() for batch in page]
            return {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": start + limit < len(newest_first),
            }

    def cancel_batch(self, batch_id: str) -> BatchObject:
        with self.lock:
            batch = self._batch(batch_id)
            now = time.monotonic()
            self._advance(batch, now)
            if batch.status in {"cancelling", "cancelled"}:
                return batch.to_json()
            if batch.status in _TERMINAL_STATUSES:
                raise APIError(
                    400, f"Cannot cancel a batch with status '{batch.status}'.", param="batch_id"
                )
            batch.completed_before_cancel = batch.completed
            batch.cancel_requested_monotonic = now
            batch.cancelling_at = int(time.time())
            batch.status = "cancelling"
            return batch.to_json()

    def _progress(self, seconds_processing: float) -> float:
        """The share of a batch's requests done after ``seconds_processing`` in progress."""
        if self.settings.processing_seconds <= 0:
            return 1.0
        return max(0.0, min(1.0, seconds_processing / self.settings.processing_seconds))

    def _advance(self, batch: Batch, now: float) -> None:
        """Move ``batch`` to the state implied by the time elapsed since it was created."""
        if batch.status in _TERMINAL_STATUSES:
            return
        settings = self.settings
        if batch.cancel_requested_monotonic is not None:
            cancelling_for = now - batch.cancel_requested_monotonic
            if cancelling_for >= settings.cancelling_seconds:
                cancel_offset = batch.cancel_requested_monotonic - batch.created_monotonic
                batch.cancelled_at = batch.wall(cancel_offset + settings.cancelling_seconds)
                done = batch.completed_before_cancel
                if done:
                    # What finished before the cancel is still delivered, as OpenAI does.
                    self._write_output(batch, done, batch.cancelled_at)
                batch.status = "cancelled"
            return
        elapsed = now - batch.created_monotonic
        validating = settings.validating_seconds
        if elapsed < validating:
            batch.status = "validating"
            return
        if batch.validation_errors:
            batch.failed_at = batch.wall(validating)
            batch.status = "failed"
            return
        total = len(batch.requests)
        batch.in_progress_at = batch.wall(validating)
        batch.total = total
        processing_done = validating + settings.processing_seconds
        expiry = batch.expiry_seconds
        if elapsed >= expiry and processing_done > expiry:
            # The window ran out first: what was done is delivered, the rest is expired.
            done = min(total, math.floor(total * self._progress(expiry - validating)))
            batch.expired_at = batch.wall(expiry)
            self._write_output(batch, done, batch.expired_at, expire_rest=True)
            batch.status = "expired"
            return
        if elapsed < processing_done:
            progress = self._progress(elapsed - validating)
            batch.completed = min(total, math.floor(total * progress))
            batch.status = "in_progress"
            return
        batch.finalizing_at = batch.wall(processing_done)
        if elapsed < processing_done + settings.finalizing_seconds:
            batch.completed = total
            batch.status = "finalizing"
            return
        # Output is produced lazily, on the first look after processing time has run out.
        completed_at = batch.wall(processing_done + settings.finalizing_seconds)
        self._write_output(batch, total, completed_at)
        batch.completed_at = completed_at
        batch.status = "completed"

    def _output_order(self, requests: Sequence[BatchRequest]) -> list[BatchRequest]:
        """Order requests by a seeded hash of custom_id: stable, but never the input order."""

        def key(request: BatchRequest) -> str:
            digest = f"{self.settings.seed}:{request.custom_id}".encode()
            return hashlib.sha256(digest).hexdigest()

        ordered = sorted(requests, key=key)
        # Real OpenAI does not preserve order; a lucky hash must not let clients rely on it.
        if len(ordered) > 1 and ordered == list(requests):
            ordered = ordered[1:] + ordered[:1]
        return ordered

    def _write_output(
        self, batch: Batch, count: int, created: int, *, expire_rest: bool = False
    ) -> None:
        """Answer the first ``count`` requests (in output order) and store the output file.

        Requests the error rate picks go to the error file as 400s; with ``expire_rest`` the
        requests after the first ``count`` go there too, as ``batch_expired``.
        """
        ordered = self._output_order(batch.requests)
        prepared, batch.prepared = batch.prepared, None
        answered: tuple[list[str], list[str]] | None = None
        if prepared is not None and prepared.created == created and count == len(ordered):
            prepared.done.wait()  # its thread started when the batch went in progress
            if not expire_rest and len(prepared.lines) + len(prepared.errors) == count:
                answered = prepared.lines, prepared.errors
        lines, errors = answered or self._answer(batch, ordered[:count], created)
        if expire_rest:
            for request in ordered[count:]:
                errors.append(orjson.dumps(expired_line(request, self._hex)).decode())
        if lines:
            batch.output_file_id = self._store_output(batch, "output", lines, created)
        if errors:
            batch.error_file_id = self._store_output(batch, "error", errors, created)
        batch.completed = len(lines)
        batch.failed = len(errors)

    def _answer(
        self, batch: Batch, requests: Sequence[BatchRequest], created: int
    ) -> tuple[list[str], list[str]]:
        """The output lines and error lines of ``requests``, in their order."""
        lines: list[str] = []
        errors: list[str] = []
        for request in requests:
            refused = refusal(self.settings, request.model, request.messages)
            if refused is not None:
                errors.append(orjson.dumps(refused_line(request, refused, self._hex)).decode())
            elif request_fails(self.settings, f"{batch.id}:{request.custom_id}"):
                line = error_line(request, self.settings.error_rate, self._hex)
                errors.append(orjson.dumps(line).decode())
            else:
                lines.append(orjson.dumps(response_line(request, created, self._hex)).decode())
        return lines, errors

    def _store_output(self, batch: Batch, kind: str, lines: list[str], created: int) -> str:
        stored = StoredFile(
            id=f"file-{self._hex(24)}",
            filename=f"{batch.id}_{kind}.jsonl",
            purpose="batch_output",
            data=("\n".join(lines) + "\n").encode("utf-8"),
            created_at=created,
        )
        self.files[stored.id] = stored
        return stored.id
