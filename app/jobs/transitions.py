"""Every write to the ``jobs`` table: a job's state transitions, in one module.

queued → waiting → batched → submitted → completed | failed | cancelled (docs/design.md).
Each transition re-checks the state it starts from in its UPDATE, so a concurrent writer that
got there first wins and the second is a no-op. A transition that ends jobs records their
costs in the ledger and calls ``events.jobs_finished`` in the same transaction (``ended``),
so a result is never stored without its cost record and the webhook deliveries it owes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, or_, update
from sqlalchemy.orm import Session

from app.jobs import repository
from app.jobs.ended import Costs
from app.jobs.ended import finished as _finished
from app.jobs.rows import NewJob, RoutedJob
from app.kit.db import (
    attribute_arrays,
    execute_binary,
    in_array,
    row_columns,
    update_columns,
    update_returning,
)
from app.ledger import service as ledger_service
from app.models import (
    TERMINAL_STATES,
    Job,
    JobGroup,
    JobMode,
    JobState,
    utcnow,
)

_JOBS = cast(Table, Job.__table__)


# Admission, ingest and cancellation (app/intake, app/jobs) ------------------------------------

# Rows per INSERT statement.
INSERT_CHUNK = 5000

_CANCELLED = "cancelled by the client"

# Postgres keeps timestamps Python's datetime cannot hold (before year 1 or after 9999 in UTC).
_READABLE_FROM = datetime(1, 1, 2, tzinfo=UTC)
_READABLE_UNTIL = datetime(9999, 12, 30, tzinfo=UTC)
_UNREADABLE_DEADLINE = "its deadline is outside the range that can be stored and read back"


def quarantine(
    session: Session, *, job_ids: Sequence[uuid.UUID], reason: str, at: datetime
) -> list[uuid.UUID]:
    """Fail poison jobs (rows that make their stage raise) alone, with ``reason``, so the rest
    of their chunk goes on. A deadline Python cannot read back is cleared first (and named in
    the error), so the job can be read, cancelled and announced. Jobs already handed to the
    provider keep their state. Returns the jobs failed."""
    unreadable = set(
        session.scalars(
            update(Job)
            .where(
                in_array(Job.id, job_ids),
                or_(Job.deadline < _READABLE_FROM, Job.deadline > _READABLE_UNTIL),
            )
            .values(deadline=None)
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    )
    failed: list[uuid.UUID] = []
    for ids, error in (
        ([i for i in job_ids if i in unreadable], f"{_UNREADABLE_DEADLINE}: {reason}"),
        ([i for i in job_ids if i not in unreadable], reason),
    ):
        if not ids:
            continue
        statement = (
            update(Job)
            .where(
                in_array(Job.id, ids),
                Job.state.in_([JobState.queued, JobState.waiting, JobState.batched]),
            )
            .values(state=JobState.failed, error=error, completed_at=at, updated_at=utcnow())
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        failed += session.scalars(statement)
    _finished(session, failed)
    return failed


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
    _finished(session, ended)
    return inserted


def write_outcomes(
    session: Session, rows: Sequence[RoutedJob], *, costs: Costs | None = None
) -> None:
    """Store what ingest decided for queued jobs it holds locked (rows all of one type:
    routed or failed jobs, or cache answers with their cost chains in ``costs``); the jobs
    that ended are recorded in the ledger and announced, from the rows the UPDATE returns."""
    if any(row.state in TERMINAL_STATES for row in rows):
        _write_ended(session, row_columns(rows), costs)
    else:  # routed jobs only: nothing ended, nothing to return
        update_columns(session, _JOBS, row_columns(rows))


def _write_ended(
    session: Session, columns: dict[str, list[Any]], costs: Costs | None, guard: str = ""
) -> None:
    """``update_columns``, then the rows it updated that ended are recorded and announced
    (``ended.finished``), their facts from the UPDATE's RETURNING rather than read again."""
    facts = update_returning(
        session, _JOBS, columns, returning=repository.EndedFacts._fields, guard=guard
    )
    ended = [f for f in map(repository.EndedFacts._make, facts) if f.state in TERMINAL_STATES]
    _finished(session, [row.id for row in ended], costs, ended)


def _cancel(session: Session, *where: ColumnElement[bool], now: datetime) -> list[uuid.UUID]:
    """Move the jobs matching ``where`` that have not ended to ``cancelled``; returns their
    ids. The UPDATE re-checks each row's state after waiting for its lock, so a result the
    poller applies first wins, and a result arriving after the cancel is never applied."""
    statement = (
        update(Job)
        .where(*where, Job.state.not_in(TERMINAL_STATES))
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
    _finished(session, cancelled)
    return cancelled


def cancel_unfinished(session: Session, *, group_id: uuid.UUID, now: datetime) -> list[uuid.UUID]:
    """Move a group's jobs that have not ended to ``cancelled``; returns their ids."""
    return _cancel(session, Job.group_id == group_id, now=now)


def cancel_one(session: Session, *, tenant_id: uuid.UUID, job_id: uuid.UUID, now: datetime) -> bool:
    """Move one job that has not ended to ``cancelled``; False when it had already ended."""
    return bool(_cancel(session, Job.id == job_id, Job.tenant_id == tenant_id, now=now))


# Windows, provider batches and results (app/batching) -----------------------------------------

# The batch-wide UPDATEs skip ORM synchronisation: matching a thousand loaded objects in Python
# cost more than the UPDATE itself; callers re-read rows they need.


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A job's end, as a provider batch gave it: ``completed`` with its result, usage and
    cost chain (the ledger's record; ``cost_usd`` / ``naive_cost_usd`` are its ends), or
    ``failed`` with the reason."""

    job_id: uuid.UUID
    state: JobState
    result: str | None
    error: str | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cache_write_tokens: int | None
    costs: ledger_service.CostChain | None
    completed_at: datetime

    @property
    def cost_usd(self) -> Decimal | None:
        return None if self.costs is None else self.costs.actual

    @property
    def naive_cost_usd(self) -> Decimal | None:
        return None if self.costs is None else self.costs.naive

    reserved_usd = None  # the actual cost has landed: budgets no longer count a reservation

    @classmethod
    def failed(cls, job_id: uuid.UUID, *, error: str, at: datetime) -> JobOutcome:
        return cls(job_id, JobState.failed, None, error, None, None, None, None, None, at)


# What an outcome writes besides the state (``updated_at`` is its ``completed_at``).
_OUTCOME_COLUMNS = ("result", "error", "input_tokens", "output_tokens", "cached_input_tokens",
                    "cache_write_tokens", "cost_usd", "naive_cost_usd", "completed_at",
                    "reserved_usd")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Retry:
    """A job whose request failed retryably, going back to a window for a later batch; with
    ``model`` set, the next model of its fallback chain (``route_reason``, ``routing`` too)."""

    job_id: uuid.UUID
    attempts: int
    mode: JobMode | None
    error: str
    provider: str | None = None
    model: str | None = None
    route_reason: str | None = None
    routing: dict[str, Any] | None = None
    reserved_usd: Decimal | None = None  # the new model's expected cost


def claim_into_batch(
    session: Session, *, job_ids: Sequence[uuid.UUID], batch_id: uuid.UUID
) -> None:
    """waiting → batched: jobs the caller holds locked (``repository.lock_waiting``) go into a
    pending provider batch.

    The lock stands in for the state check: the rows are still waiting. (A state condition
    beside the ids can also lead the planner to a state index instead of the primary key.)
    """
    session.execute(
        update(Job)
        .where(in_array(Job.id, job_ids))
        .values(state=JobState.batched, provider_batch_id=batch_id, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def release(session: Session, *, job_ids: Sequence[uuid.UUID]) -> None:
    """batched → waiting: claimed jobs that were not sent go back to their window."""
    session.execute(
        update(Job)
        .where(in_array(Job.id, job_ids), Job.state == JobState.batched)
        .values(state=JobState.waiting, provider_batch_id=None, updated_at=utcnow())
    )


# A route cleared: the job is queued and routed again at ingest.
_UNROUTED: dict[str, Any] = {
    "state": JobState.queued,
    "provider": None,
    "model": None,
    "mode": None,
    "route_reason": None,
    "routing": None,
    "routed_at": None,
    "provider_batch_id": None,
}


def unroute(
    session: Session,
    *,
    provider: str,
    model: str,
    mode: JobMode | None = None,
    batch_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """waiting (in the window ``provider, model, mode``) or batched (in ``batch_id``) →
    queued with no route: jobs of a model that left the catalog are routed again at ingest
    (or fail there with the reason). Returns their ids."""
    where = (
        [Job.state == JobState.batched, Job.provider_batch_id == batch_id]
        if batch_id is not None
        else [Job.state == JobState.waiting, Job.mode == mode]
    )
    statement = (
        update(Job)
        .where(Job.provider == provider, Job.model == model, *where)
        .values(**_UNROUTED, updated_at=utcnow())
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(statement))


def release_orphans(
    session: Session, *, before: datetime, live: Select[uuid.UUID]
) -> list[uuid.UUID]:
    """batched → waiting for jobs not updated since ``before`` whose batch is gone or not among
    ``live`` (the pending batches, a query batching hands in); returns their ids."""
    statement = (
        update(Job)
        .where(
            Job.state == JobState.batched,
            Job.updated_at < before,
            or_(Job.provider_batch_id.is_(None), Job.provider_batch_id.not_in(live)),
        )
        .values(state=JobState.waiting, provider_batch_id=None, updated_at=utcnow())
        .returning(Job.id)
    )
    return list(session.scalars(statement))


def mark_submitted(session: Session, *, batch_id: uuid.UUID, at: datetime) -> None:
    """batched → submitted for every job of a batch the provider accepted (or that is being
    sent as realtime calls)."""
    session.execute(
        update(Job)
        .where(Job.provider_batch_id == batch_id, Job.state == JobState.batched)
        .values(state=JobState.submitted, submitted_at=at, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def fail_batch(session: Session, *, batch_id: uuid.UUID, error: str, at: datetime) -> None:
    """batched → failed for every job of a batch the provider refused."""
    statement = (
        update(Job)
        .where(Job.provider_batch_id == batch_id, Job.state == JobState.batched)
        .values(state=JobState.failed, error=error, completed_at=at, updated_at=utcnow())
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    _finished(session, list(session.scalars(statement)))


def fail(
    session: Session,
    *,
    job_ids: Sequence[uuid.UUID],
    error: str,
    at: datetime,
    from_state: JobState,
) -> None:
    """→ failed, for the jobs among ``job_ids`` still in ``from_state``."""
    statement = (
        update(Job)
        .where(in_array(Job.id, job_ids), Job.state == from_state)
        .values(state=JobState.failed, error=error, completed_at=at, updated_at=utcnow())
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    _finished(session, list(session.scalars(statement)))


def apply_results(
    session: Session, outcomes: Sequence[JobOutcome], *, from_state: JobState
) -> None:
    """Write outcomes by job id, only onto jobs still in ``from_state`` (a re-poll is a no-op,
    and a job cancelled meanwhile keeps ``cancelled``).

    One ``UPDATE ... FROM unnest(arrays)`` for the whole batch: a thousand results cost one
    round trip and one statement, not a thousand.
    """
    if not outcomes:
        return
    # Column arrays straight from the attributes: no dict per row.
    columns: dict[str, list[Any]] = {
        "id": [o.job_id for o in outcomes],
        "state": [o.state for o in outcomes],
        "updated_at": [o.completed_at for o in outcomes],
        **{name: [getattr(o, name) for o in outcomes] for name in _OUTCOME_COLUMNS},
    }
    costs = {o.job_id: o.costs for o in outcomes if o.costs is not None}
    # The guard is fixed text: the state is one of our enum's values. Jobs it skips ended
    # before (a re-poll, a cancel) and were recorded and announced then.
    _write_ended(session, columns, costs, guard=f"jobs.state = '{from_state.value}'")


def requeue(session: Session, retries: Sequence[Retry], *, from_state: JobState) -> None:
    """→ waiting, for a later batch: jobs still in ``from_state`` whose request failed
    retryably, with their new attempt count, mode and last error (and new route, if any)."""
    now = utcnow()
    for group in ([r for r in retries if r.model is None], [r for r in retries if r.model]):
        columns: dict[str, list[Any]] = {
            "id": [r.job_id for r in group],
            "state": [JobState.waiting] * len(group),
            "provider_batch_id": [None] * len(group),
            "attempts": [r.attempts for r in group],
            "mode": [r.mode for r in group],
            "error": [r.error for r in group],
            "updated_at": [now] * len(group),
        }
        if group and group[0].model is not None:
            for name in ("provider", "model", "route_reason", "routing", "reserved_usd"):
                columns[name] = [getattr(r, name) for r in group]
        # The guard is fixed text: the state is one of our enum's values.
        update_columns(session, _JOBS, columns, guard=f"jobs.state = '{from_state.value}'")
