"""Ingest: queued jobs are routed, then answered from the cache or sent to their window."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import partial

from psycopg.errors import DeadlockDetected, UniqueViolation
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.cache import service as cache_service
from app.catalog.catalog import Catalog
from app.embeddings import service as embedding_service
from app.embeddings.base import Embedder
from app.intake import budgets as intake_budgets
from app.intake import coalescing, strategy
from app.intake.placement import Placement, enqueued_load, in_flight_load, place
from app.jobs import coalescing as jobs_coalescing
from app.jobs import repository as job_repository
from app.jobs import transitions
from app.jobs.rows import CachedAnswer, RoutedJob
from app.kit import queue
from app.ledger import service as ledger_service
from app.models import CacheMode, JobState, utcnow
from app.tenants import service as tenant_service

log = logging.getLogger(__name__)

# Tries of a chunk whose coalescing leader another process elected first.
ELECTIONS = 3
# What a bad row (not a lost connection, not a bug of every row) makes ingest raise: a value
# Postgres stored but cannot give back or write, a request the router or embedder refuses.
POISON: tuple[type[Exception], ...] = (DataError, ValueError, LookupError, ArithmeticError)


def _routed(
    job_id: uuid.UUID, placement: Placement, *, cache_key: str | None, now: datetime
) -> RoutedJob:
    """The row ingest writes: the placement's route columns, the cache key, the time."""
    return RoutedJob(id=job_id, **placement._asdict(), cache_key=cache_key, updated_at=now)


def ingest(
    session: Session,
    *,
    job_ids: list[uuid.UUID],
    catalog: Catalog,
    embedder: Callable[[], Embedder] | None = None,
) -> int:
    """Answer queued jobs from the cache or route them into a window. Returns jobs handled.

    A chunk holding a poison row (one that makes ingest raise one of ``POISON``) is split in
    halves, each in its own savepoint, until the row is alone: that job fails with the reason
    and every other job of the chunk is ingested.
    """
    for election in range(ELECTIONS):
        try:
            with session.begin_nested():
                return _ingest(session, job_ids=job_ids, catalog=catalog, embedder=embedder)
        except (IntegrityError, OperationalError, UniqueViolation, DeadlockDetected) as exc:
            # Another process elected a leader for one of these keys first (or electing
            # deadlocked with it): the chunk is ingested again and follows that leader.
            if election + 1 == ELECTIONS or not _lost_election(exc):
                raise
            log.info("ingest lost a coalescing election; looking again: %s", _describe(exc))
        except POISON as exc:
            return _split(session, exc, job_ids=job_ids, catalog=catalog, embedder=embedder)
    raise AssertionError("unreachable")  # the last election raises


def _lost_election(exc: Exception) -> bool:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return isinstance(cause, DeadlockDetected) or jobs_coalescing.lost_election(exc)


def _split(
    session: Session,
    exc: Exception,
    *,
    job_ids: list[uuid.UUID],
    catalog: Catalog,
    embedder: Callable[[], Embedder] | None,
) -> int:
    """A chunk that raised ``exc`` (one of ``POISON``): its halves are ingested apart, and a
    job alone that raises fails with the reason."""
    if len(job_ids) > 1:
        half = len(job_ids) // 2
        return sum(
            ingest(session, job_ids=part, catalog=catalog, embedder=embedder)
            for part in (job_ids[:half], job_ids[half:])
        )
    reason = f"ingest failed on this job: {_describe(exc)}"
    log.warning("job %s: %s", job_ids[0], reason)
    return len(transitions.quarantine(session, job_ids=job_ids, reason=reason, at=utcnow()))


def _describe(exc: Exception) -> str:
    """The error without SQLAlchemy's statement and parameters (which can hold the prompt)."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return f"{type(cause).__name__}: {cause}".splitlines()[0]


def _ingest(
    session: Session,
    *,
    job_ids: list[uuid.UUID],
    catalog: Catalog,
    embedder: Callable[[], Embedder] | None,
) -> int:
    """One chunk's ingest (see ``ingest``).

    Only jobs still ``queued`` are touched, under row locks, so a repeated or concurrent
    message does nothing twice. The outcome is written in two statements (routed or failed
    jobs, then cache answers), not one per job.
    """
    jobs = job_repository.lock_queued(session, ids=job_ids)
    if not jobs:
        return 0
    now = utcnow()
    routed: dict[uuid.UUID, Placement] = {}
    failed: list[RoutedJob] = []
    tiers: dict[uuid.UUID, str] = {}
    get_embedder = embedder or embedding_service.get_embedder
    # Embed -> route -> cache: a learned or semantic tenant's prompts are embedded once,
    # here, and the cache's semantic layer uses the same vectors.
    decisions = strategy.decide(session, jobs=jobs, catalog=catalog, embedder=get_embedder)
    # A downgrade tenant's jobs that fit what it may still commit keep their route; the
    # rest go to cheaper models.
    rooms = intake_budgets.downgrading(
        session, jobs=[(job.id, job.tenant_id) for job in jobs], now=now
    )
    load = enqueued_load(session, catalog)
    busy = in_flight_load(session, catalog)
    for job in jobs:
        room = rooms.get(job.tenant_id)
        place_job = partial(
            place,
            job,
            instruction=job.instruction,
            model_hint=job.model_hint,
            tier_hint=job.tier_hint,
            requested_mode=job.requested_mode,
            deadline=job.deadline,
            catalog=catalog,
            now=now,
            max_output_tokens=job.max_output_tokens,
            strategy=decisions.settings[job.tenant_id].strategy,
            learned=decisions.verdicts.get(job.id),
            semantic=decisions.matches.get(job.id),
            note=decisions.notes.get(job.id),
        )
        placement = place_job(load=load, busy=busy)
        if room is not None:
            cost = placement.reserved_usd or Decimal(0)
            if not room.fits(cost):
                placement = place_job(budget=room.exceeded(cost))
            room.take(placement.reserved_usd or Decimal(0))
        if placement.state == JobState.failed:
            failed.append(_routed(job.id, placement, cache_key=None, now=now))
            continue
        assert placement.model is not None
        tiers[job.id] = catalog.model(placement.model).tier
        routed[job.id] = placement

    # A job identical to one live (waiting, batched, at the provider) follows it: coalescing
    # asks first, so a leader that ends meanwhile has its answer in the cache read next.
    tenant_of = {job.id: job.tenant_id for job in jobs}
    keys = {
        job.id: cache_service.cache_key(job, tier=tiers[job.id])
        for job in jobs
        if job.id in routed and job.cache_mode != CacheMode.bypass
    }
    live = coalescing.live_leaders(session, keys=keys, tenant_of=tenant_of)
    patient = {
        job.id
        for job in jobs
        if job.id in keys
        and coalescing.is_patient(
            requested=job.requested_mode,
            deadline=job.deadline,
            margin_seconds=catalog.providers[
                routed[job.id].provider or ""
            ].escalation_margin_seconds,
            now=now,
        )
    }
    riding = coalescing.riders(
        keys=keys,
        modes={i: p.mode for i, p in routed.items()},
        tenant_of=tenant_of,
        live=live,
        patient=patient,
    )
    # Exact, then semantic (one embedding call for the whole chunk), then verification.
    lookup = cache_service.lookup_jobs(
        session,
        jobs=[job for job in jobs if job.id in routed and job.id not in riding],
        tiers=tiers,
        embedder=get_embedder,
        embeddings=decisions.vectors,
        cache_keys=keys,
    )
    waiting: list[RoutedJob] = []
    answered: list[CachedAnswer] = []
    costs: dict[uuid.UUID, ledger_service.CostChain] = {}
    baselines = tenant_service.baseline_models(session, tenant_ids=list(tenant_of.values()))
    for job_id, placement in routed.items():
        cache_key = keys.get(job_id)
        hit = lookup.hits.get(job_id)
        if hit is None:
            waiting.append(_routed(job_id, placement, cache_key=cache_key, now=now))
            continue
        entry = hit.entry
        # A hit pays nothing and records what it would have cost on its routed path.
        chain = ledger_service.chain(
            catalog,
            model=placement.model or entry.model,
            mode=placement.mode,
            usage=ledger_service.TokenUsage(
                input_tokens=entry.input_tokens, output_tokens=entry.output_tokens
            ),
            answered_by=ledger_service.AnsweredBy.cache_semantic
            if hit.semantic
            else ledger_service.AnsweredBy.cache_exact,
            naive_model=baselines.get(tenant_of[job_id]),
        )
        costs[job_id] = chain
        answer = placement._replace(
            state=JobState.completed, model=entry.model, error=None, completed_at=now,
            reserved_usd=None,
        )  # fmt: skip
        answered.append(
            CachedAnswer(
                id=job_id,
                **answer._asdict(),
                cache_key=cache_key,
                updated_at=now,
                cache_hit=True,
                cached_from_job_id=entry.source_job_id,
                cache_similarity=round(hit.similarity, 4),
                result=entry.result,
                input_tokens=entry.input_tokens,
                output_tokens=entry.output_tokens,
                cost_usd=chain.actual,
                naive_cost_usd=chain.naive,
            )
        )
    # Misses with the same key as another (live, or in this chunk) are sent once.
    near = coalescing.near_leaders(session, queries=lookup.near, tenant_of=tenant_of)
    waiting = coalescing.coalesce(
        misses=waiting, tenant_of=tenant_of, live=live, patient=patient, near=near
    )
    transitions.write_outcomes(session, waiting + failed)
    transitions.write_outcomes(session, answered, costs=costs)
    if waiting:
        queue.enqueue(session, queue.COLLECT)
    return len(jobs)
