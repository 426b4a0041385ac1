"""Every write to the ``jobs`` table: a job's state transitions, in one module.

queued → waiting → batched → submitted → completed | failed | cancelled (docs/design.md).
Each transition re-checks the state it starts from in its UPDATE, so a concurrent writer that
got there first wins and the second is a no-op. A transition that ends jobs calls
``events.jobs_finished`` in the same transaction, so a result is never stored without the
webhook deliveries it owes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, update
from sqlalchemy.orm import Session

from app.jobs import events
from app.jobs.rows import NewJob, RoutedJob
from app.kit.db import attribute_arrays, execute_binary, update_rows_by_id
from app.models import TERMINAL_STATES, Job, JobGroup, JobState

# Admission, ingest and cancellation (app/intake, app/jobs) ------------------------------------

# Rows per INSERT statement.
INSERT_CHUNK = 5000

_CANCELLED = "cancelled by the client"


def create_group(session: Session, *, tenant_id: uuid.UUID, size: int) -> uuid.UUID:
    """Store the group of a bulk submission; returns its id."""
    group = JobGroup(tenant_id=tenant_id, size=size)
    session.add(group)
    session.flush()
    return group.id


def resize_group(session: Session, *, group_id: uuid.UUID, size: int) -> None:
    """Correct a group's size when fewer of its jobs were stored than announced."""
    session.execute(update(JobGroup).where(JobGroup.id == group_id).values(size=size))


def insert_many(session: Session, rows: Sequence[NewJob]) -> set[uuid.UUID]:
    """Insert jobs in bulk; returns the ids that were new.

    A row whose (tenant, idempotency key) already exists is skipped, not an error. Jobs
    stored already ended (``failed``: no model can take them) are announced as finished.
    """
    if not rows:
        return set()
    # One statement whose parameters are one array per column, unnested by Postgres, sent in
    # binary: its text does not grow with the row count, so neither SQLAlchemy nor psycopg
    # spends seconds compiling a 10,000-row VALUES clause (multi-row VALUES cost ~1 ms per
    # job), and no element is quoted or escaped in Python.
    table = cast(Table, Job.__table__)
    names = NewJob._fields
    columns = ", ".join(f'"{name}"' for name in names)
    inserted: set[uuid.UUID] = set()
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        placeholders, arrays = attribute_arrays(session, table, names, chunk)
        # Identifiers are the table's own column names (checked by attribute_arrays); values
        # are parameters.
        sql = f"INSERT INTO jobs ({columns}) SELECT * FROM unnest({', '.join(placeholders)})"  # noqa: S608
        if not any(row.idempotency_key for row in chunk):
            # Rows without a key cannot conflict (the unique index skips NULL keys), and a
            # plain insert costs Postgres less than a speculative one.
            execute_binary(session, sql, arrays).close()
            inserted.update(row.id for row in chunk)
            continue
        sql += (
            " ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
            " DO NOTHING RETURNING id"
        )
        with execute_binary(session, sql, arrays) as cursor:
            inserted.update(row[0] for row in cursor.fetchall())
    ended = [row.id for row in rows if row.state in TERMINAL_STATES and row.id in inserted]
    events.jobs_finished(session, job_ids=ended)
    return inserted


def write_outcomes(session: Session, rows: Sequence[RoutedJob]) -> None:
    """Store what ingest decided for queued jobs it holds locked (rows all of one type:
    routed or failed jobs, or cache answers); the jobs that ended are announced."""
    update_rows_by_id(session, cast(Table, Job.__table__), rows)
    events.jobs_finished(session, job_ids=[row.id for row in rows if row.state in TERMINAL_STATES])


def cancel_unfinished(session: Session, *, group_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
    """Move a group's jobs that have not ended to ``cancelled``; returns their ids.

    The UPDATE re-checks each row's state after waiting for its lock, so a job that a
    concurrent poller completes first keeps its result.
    """
    statement = (
        update(Job)
        .where(Job.group_id == group_id, Job.state.not_in(TERMINAL_STATES))
        .values(
            state=JobState.cancelled,
            error=_CANCELLED,
            cancelled_at=now,
            completed_at=now,
            updated_at=now,
        )
        .returning(Job.id)
    )
    cancelled = list(session.scalars(statement))
    events.jobs_finished(session, job_ids=cancelled)
    return cancelled


def cancel_one(session: Session, *, tenant_id: uuid.UUID, job_id: uuid.UUID, now: datetime) -> bool:
    """Move one job that has not ended to ``cancelled``; False when it had already ended.

    The UPDATE re-checks the state after waiting for the row lock, so a result the poller
    applies first wins, and a result arriving after the cancel is never applied.
    """
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.tenant_id == tenant_id, Job.state.not_in(TERMINAL_STATES))
        .values(
            state=JobState.cancelled,
            error=_CANCELLED,
            cancelled_at=now,
            completed_at=now,
            updated_at=now,
        )
        .returning(Job.id)
    )
    if session.scalar(statement) is None:
        return False
    events.jobs_finished(session, job_ids=[job_id])
    return True


# Windows, provider batches and results (app/batching) -----------------------------------------
