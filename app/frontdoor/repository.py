"""Queries of the front door's tables: files, their parts, batches and their lines."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.orm import Session

from app.models import OpenAIBatch, OpenAIBatchLine, OpenAIFile, OpenAIFilePart, Tenant


def tenant(session: Session, *, tenant_id: uuid.UUID) -> Tenant | None:
    return session.get(Tenant, tenant_id)


def get_file(session: Session, *, tenant_id: uuid.UUID, file_id: uuid.UUID) -> OpenAIFile | None:
    query = select(OpenAIFile).where(OpenAIFile.id == file_id, OpenAIFile.tenant_id == tenant_id)
    return session.scalars(query).one_or_none()


def list_files(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    purpose: str | None,
    after: OpenAIFile | None,
    limit: int,
    newest_first: bool,
) -> list[OpenAIFile]:
    key = tuple_(OpenAIFile.created_at, OpenAIFile.id)
    query = select(OpenAIFile).where(OpenAIFile.tenant_id == tenant_id)
    if purpose is not None:
        query = query.where(OpenAIFile.purpose == purpose)
    if after is not None:
        cursor = tuple_(after.created_at, after.id)
        query = query.where(key < cursor if newest_first else key > cursor)
    if newest_first:
        query = query.order_by(OpenAIFile.created_at.desc(), OpenAIFile.id.desc())
    else:
        query = query.order_by(OpenAIFile.created_at, OpenAIFile.id)
    return list(session.scalars(query.limit(limit)))


def delete_file(session: Session, *, file_id: uuid.UUID) -> None:
    session.execute(delete(OpenAIFile).where(OpenAIFile.id == file_id))


def add_part(session: Session, *, file_id: uuid.UUID, seq: int, data: bytes) -> None:
    session.execute(insert(OpenAIFilePart).values(file_id=file_id, seq=seq, data=data))


def part(session: Session, *, file_id: uuid.UUID, seq: int) -> bytes | None:
    """One part of a file (one at a time, so reading a file takes one part of memory)."""
    query = select(OpenAIFilePart.data).where(
        OpenAIFilePart.file_id == file_id, OpenAIFilePart.seq == seq
    )
    return session.scalar(query)


def get_batch(
    session: Session, *, tenant_id: uuid.UUID, batch_id: uuid.UUID, lock: bool = False
) -> OpenAIBatch | None:
    query = select(OpenAIBatch).where(
        OpenAIBatch.id == batch_id, OpenAIBatch.tenant_id == tenant_id
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).one_or_none()


def lock_batch(session: Session, *, batch_id: uuid.UUID) -> OpenAIBatch | None:
    """The batch, locked; ``None`` when it is gone or another transaction holds it."""
    query = select(OpenAIBatch).where(OpenAIBatch.id == batch_id).with_for_update(skip_locked=True)
    return session.scalars(query).one_or_none()


def list_batches(
    session: Session, *, tenant_id: uuid.UUID, after: OpenAIBatch | None, limit: int
) -> list[OpenAIBatch]:
    query = select(OpenAIBatch).where(OpenAIBatch.tenant_id == tenant_id)
    if after is not None:
        query = query.where(
            tuple_(OpenAIBatch.created_at, OpenAIBatch.id) < tuple_(after.created_at, after.id)
        )
    query = query.order_by(OpenAIBatch.created_at.desc(), OpenAIBatch.id.desc()).limit(limit)
    return list(session.scalars(query))


def add_lines(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(OpenAIBatchLine), list(rows))


def lines(
    session: Session, *, batch_id: uuid.UUID, after: int, limit: int
) -> list[OpenAIBatchLine]:
    """A page of a batch's lines in file order, after line number ``after``."""
    query = (
        select(OpenAIBatchLine)
        .where(OpenAIBatchLine.batch_id == batch_id, OpenAIBatchLine.line > after)
        .order_by(OpenAIBatchLine.line)
        .limit(limit)
    )
    return list(session.scalars(query))
