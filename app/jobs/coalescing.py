"""Coalescing's reads and writes on ``jobs``: the live leaders of exact cache keys, and what a
leader's followers become when it ends (``app/intake/coalescing.py`` decides who leads).

A leader is a job ingest marked ``coalesce_leader``; while it is waiting, batched or at the
provider, the unique partial index ``uq_jobs_live_leader`` holds it as the one live leader
of its (tenant, cache key), so two ingest processes cannot both elect one. A follower waits
(``waiting``, ``coalesced_with`` = its leader) outside every window: the collector never
claims it (``repository.lock_waiting``), and it is settled in the transaction that ends its
leader (``ended.finished`` calls ``settle_followers``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, NamedTuple, cast

import psycopg
from sqlalchemy import Select, Table, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from app.kit import queue
from app.kit.db import in_array, update_columns
from app.ledger import service as ledger_service
from app.models import TERMINAL_STATES, Job, JobMode, JobState, utcnow

# The unique partial index that keeps one live leader per (tenant, cache key).
LEADER_INDEX = "uq_jobs_live_leader"
# Its predicate, as fixed text (a literal the planner matches against the index's).
_LIVE_LEADER = text("jobs.coalesce_leader AND jobs.state IN ('waiting', 'batched', 'submitted')")
_WAITING_FOLLOWER = text("jobs.coalesced_with IS NOT NULL AND jobs.state = 'waiting'")
_JOBS = cast(Table, Job.__table__)
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Leader:
    """A live leader: the job sent for every identical request, and the mode it goes in."""

    id: uuid.UUID
    mode: JobMode | None


def live_leaders(
    session: Session, *, tenant_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, Leader]:
    """The live leader of each of the tenant's exact cache ``keys`` that has one.

    The leaders are locked ``FOR SHARE`` until the transaction ends, so a leader cannot end
    (and settle its followers without the ones attached now) before they are committed; a
    leader that ended while this waited for its lock is not returned.
    """
    if not keys:
        return {}
    query = (
        select(Job.cache_key, Job.id, Job.mode)
        .where(Job.tenant_id == tenant_id, in_array(Job.cache_key, sorted(set(keys))), _LIVE_LEADER)
        .order_by(Job.id)
        .with_for_update(read=True)
    )
    return {key: Leader(job_id, mode) for key, job_id, mode in session.execute(query) if key}


def live_leader_ids(*, tenant_id: uuid.UUID) -> Select[uuid.UUID]:
    """The tenant's live leaders' ids, as a subquery (the semantic side of coalescing
    searches their saved band keys)."""
    return select(Job.id).where(Job.tenant_id == tenant_id, _LIVE_LEADER)


def lock_live(session: Session, *, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Leader]:
    """The jobs among ``ids`` that are still live leaders, locked ``FOR SHARE`` as
    ``live_leaders`` locks them (so none ends without settling followers attached now)."""
    if not ids:
        return {}
    query = (
        select(Job.id, Job.mode)
        .where(in_array(Job.id, sorted(set(ids))), _LIVE_LEADER)
        .order_by(Job.id)
        .with_for_update(read=True)
    )
    return {job_id: Leader(job_id, mode) for job_id, mode in session.execute(query)}


def lost_election(exc: Exception) -> bool:
    """Whether ``exc`` (SQLAlchemy's or psycopg's: the bulk writers use psycopg's cursor)
    says another transaction elected a leader for one of the same keys."""
    cause = exc.orig if isinstance(exc, IntegrityError) else exc
    if not isinstance(cause, psycopg.errors.UniqueViolation):
        return False
    return cause.diag.constraint_name == LEADER_INDEX


class _Follower(NamedTuple):
    """A waiting follower of a leader that ended, with what it takes from the leader."""

    id: uuid.UUID
    leader_id: uuid.UUID
    leader_state: JobState
    result: str | None
    provider: str | None
    model: str | None
    mode: JobMode | None
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cache_write_tokens: int | None
    naive_cost_usd: Decimal | None


_LEADER = aliased(Job)
_FOLLOWER_COLUMNS = (Job.id, _LEADER.id, _LEADER.state, _LEADER.result, _LEADER.provider,
                     _LEADER.model, _LEADER.mode, _LEADER.input_tokens, _LEADER.output_tokens,
                     _LEADER.cached_input_tokens, _LEADER.cache_write_tokens,
                     _LEADER.naive_cost_usd)  # fmt: skip
# What a completed leader gives its followers besides its cost chain.
_TAKEN = ("result", "provider", "model", "mode", "input_tokens", "output_tokens",
          "cached_input_tokens", "cache_write_tokens", "naive_cost_usd")  # fmt: skip


def settle_followers(
    session: Session,
    *,
    leader_ids: Sequence[uuid.UUID],
    costs: Mapping[uuid.UUID, ledger_service.CostChain],
) -> tuple[list[uuid.UUID], dict[uuid.UUID, ledger_service.CostChain]]:
    """What the waiting followers of ``leader_ids`` become, for those leaders that ended.

    A completed leader's followers complete with its result, model and usage, at cost 0:
    each one's chain is its leader's (``costs``, else rebuilt from the leader's cost record)
    answered by coalescing, so the cost it avoided is its ``coalescing`` savings layer and
    the layers still add up to naive minus actual. A failed or cancelled leader's followers
    are queued again with no route and ingested again: one leads the others, or they go
    through alone. Returns the followers completed and their chains: the caller records and
    announces them (and settles their own followers, should they have any).
    """
    if not leader_ids:
        return [], {}
    query = (
        select(*_FOLLOWER_COLUMNS)
        .join(_LEADER, _LEADER.id == Job.coalesced_with)
        .where(
            in_array(Job.coalesced_with, leader_ids),
            _WAITING_FOLLOWER,
            _LEADER.state.in_(TERMINAL_STATES),
        )
        .order_by(Job.id)
        .with_for_update(of=Job)
    )
    followers = [_Follower._make(row) for row in session.execute(query)]
    done = [f for f in followers if f.leader_state == JobState.completed]
    redrive(session, job_ids=[f.id for f in followers if f.leader_state != JobState.completed])
    if not done:
        return [], {}
    chains = _chains(session, done, costs)
    now = utcnow()
    columns: dict[str, list[Any]] = {
        "id": [f.id for f in done],
        "state": [JobState.completed] * len(done),
        **{name: [getattr(f, name) for f in done] for name in _TAKEN},
        "error": [None] * len(done),
        "cost_usd": [_ZERO] * len(done),
        "completed_at": [now] * len(done),
        "updated_at": [now] * len(done),
    }
    update_columns(session, _JOBS, columns, guard="jobs.state = 'waiting'")
    return columns["id"], chains


def _chains(
    session: Session,
    followers: Sequence[_Follower],
    costs: Mapping[uuid.UUID, ledger_service.CostChain],
) -> dict[uuid.UUID, ledger_service.CostChain]:
    """Each follower's chain: its leader's, paid nothing and answered by coalescing."""
    known = dict(costs)
    missing = {f.leader_id: f for f in followers if f.leader_id not in known}
    if missing:
        # A leader settled outside its own transaction (the sweeper): its chain is rebuilt
        # from its cost record's savings (naive minus each layer in turn).
        recorded = ledger_service.savings_of(session, job_ids=list(missing))
        for leader_id, follower in missing.items():
            saved = recorded.get(leader_id) or ledger_service.Savings()
            naive = follower.naive_cost_usd or _ZERO
            routed = naive - saved.routing
            batched = routed - saved.batching
            prompt_cached = batched - saved.prompt_cache
            known[leader_id] = ledger_service.CostChain(
                naive, routed, batched, prompt_cached, prompt_cached
            )
    return {
        f.id: replace(
            known[f.leader_id], actual=_ZERO, answered_by=ledger_service.AnsweredBy.coalesced
        )
        for f in followers
    }


def redrive(session: Session, *, job_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Waiting followers among ``job_ids`` go back to ``queued`` with no route and no leader,
    and are ingested again (hints sent after commit). Returns their ids."""
    if not job_ids:
        return []
    statement = (
        update(Job)
        .where(in_array(Job.id, job_ids), _WAITING_FOLLOWER)
        .values(
            state=JobState.queued,
            provider=None,
            model=None,
            mode=None,
            route_reason=None,
            routed_at=None,
            coalesced_with=None,
            updated_at=utcnow(),
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    queued = list(session.scalars(statement))
    for start in range(0, len(queued), 500):
        queue.enqueue(session, queue.INGEST, [str(i) for i in queued[start : start + 500]])
    return queued


def redrive_stranded(session: Session, *, limit: int = 10_000) -> list[uuid.UUID]:
    """The sweeper's safety net: followers still waiting on a leader that ended (every
    transition that ends a leader settles its followers, so this finds none unless a leader
    ended some other way) are ingested again, where the cache most likely answers them."""
    query = (
        select(Job.id)
        .join(_LEADER, _LEADER.id == Job.coalesced_with)
        .where(_WAITING_FOLLOWER, _LEADER.state.in_(TERMINAL_STATES))
        .limit(limit)
        .with_for_update(of=Job, skip_locked=True)
    )
    return redrive(session, job_ids=list(session.scalars(query)))
