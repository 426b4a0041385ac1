"""Files: stored in Postgres in parts of about a MiB that end on a line boundary, written
and read a part at a time, so a 200 MB batch file never sits in memory whole."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO

from sqlalchemy.orm import Session

from app.config import get_settings
from app.frontdoor import repository
from app.frontdoor.schemas import FILE_PREFIX, FileObject
from app.kit.errors import NotFound, PayloadTooLarge
from app.models import OpenAIFile, Tenant, utcnow

PART_BYTES = 1024 * 1024
BATCH, BATCH_OUTPUT = "batch", "batch_output"


def public_id(file_id: uuid.UUID) -> str:
    return f"{FILE_PREFIX}{file_id.hex}"


def parse_id(value: str) -> uuid.UUID:
    """The row id of a public file id; ``NotFound`` for anything that is not one."""
    try:
        return uuid.UUID(hex=value.removeprefix(FILE_PREFIX))
    except ValueError as exc:
        raise NotFound(f"no file {value}") from exc


def epoch(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def to_object(row: OpenAIFile) -> FileObject:
    return FileObject(
        id=public_id(row.id),
        bytes=row.bytes,
        created_at=epoch(row.created_at) or 0,
        filename=row.filename,
        purpose=row.purpose,
    )


class FileWriter:
    """Appends bytes to a new file, storing a part whenever a MiB of whole lines is ready."""

    def __init__(self, session: Session, *, tenant_id: uuid.UUID, purpose: str, filename: str):
        self.session = session
        self.row = OpenAIFile(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            purpose=purpose,
            filename=filename,
            bytes=0,
            lines=0,
            created_at=utcnow(),
        )
        session.add(self.row)
        session.flush()
        self._buffer = bytearray()
        self._seq = 0
        self._last = b"\n"

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.row.bytes += len(data)
        self.row.lines += data.count(b"\n")
        self._last = data[-1:]
        self._buffer += data
        if len(self._buffer) >= PART_BYTES:
            cut = self._buffer.rfind(b"\n") + 1
            if cut:
                self._store(bytes(self._buffer[:cut]))
                del self._buffer[:cut]

    def _store(self, data: bytes) -> None:
        repository.add_part(self.session, file_id=self.row.id, seq=self._seq, data=data)
        self._seq += 1

    def close(self) -> OpenAIFile:
        if self._buffer:
            self._store(bytes(self._buffer))
            self._buffer.clear()
        if self._last != b"\n":
            self.row.lines += 1
        self.session.flush()
        return self.row


def store_upload(
    session: Session, *, tenant: Tenant, source: BinaryIO, filename: str, purpose: str
) -> OpenAIFile:
    """Copy an uploaded file (spooled to disk by the form parser) into Postgres; 413 past
    ``THRIFTY_MAX_FILE_BYTES``."""
    limit = get_settings().max_file_bytes
    writer = FileWriter(session, tenant_id=tenant.id, purpose=purpose, filename=filename)
    while chunk := source.read(PART_BYTES):
        if writer.row.bytes + len(chunk) > limit:
            raise PayloadTooLarge(f"the file is over the {limit}-byte limit")
        writer.write(chunk)
    return writer.close()


def get(session: Session, *, tenant: Tenant, file_id: str) -> OpenAIFile:
    row = repository.get_file(session, tenant_id=tenant.id, file_id=parse_id(file_id))
    if row is None:
        raise NotFound(f"no file {file_id}")
    return row


def iter_parts(session: Session, *, file_id: uuid.UUID) -> Iterator[bytes]:
    seq = 0
    while (data := repository.part(session, file_id=file_id, seq=seq)) is not None:
        yield data
        seq += 1


def iter_lines(session: Session, *, file_id: uuid.UUID) -> Iterator[bytes]:
    """A file's lines without their newlines (parts end on line boundaries)."""
    for data in iter_parts(session, file_id=file_id):
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        yield from lines
