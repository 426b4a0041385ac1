"""Coalescing at ingest: identical requests are sent to the provider once.

Requests are identical when they have the same tenant and exact cache key
(``app/cache/keys.py``: the request text and its whole scope). Ingest first looks for the
live leaders (waiting, batched or at the provider) of its chunk's keys (``live_leaders``,
before the cache: their riders need no lookup); among the other jobs' cache misses each key
gets one leader, sent as usual. The others follow (``waiting`` outside every window, with
``coalesced_with``) and complete from the leader's result when it ends, at cost 0
(``app/jobs/coalescing.py``). Jobs that skip the cache (``bypass``) have no key and are
never coalesced.

A realtime job does not wait on a leader in a Batch API window (it would miss what it was
routed realtime for): it goes through alone, and so does a flex job on a batch leader. A
*patient* job is the exception: one placed by ``auto`` whose deadline is further away than
its provider's ``escalation_margin_seconds`` rides any leader, since the deadline is what it
asked for; should the leader not have ended that margin before the deadline, the sweeper
detaches it and sends it on its own faster path (``app/batching/escalation.py``). In a
chunk, the fastest job leads its key.

Two processes electing a leader for one key at once cannot both win: the unique partial
index ``uq_jobs_live_leader`` refuses the second, whose ingest looks again (``ingest``) and
finds the first.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.cache import service as cache_service
from app.jobs import coalescing as jobs_coalescing
from app.jobs import repository as job_repository
from app.jobs.rows import RoutedJob
from app.models import JobMode, RequestedMode

# The live leaders found, by (tenant, exact cache key).
Live = dict[tuple[uuid.UUID, str], jobs_coalescing.Leader]


def is_patient(
    *, requested: RequestedMode, deadline: datetime | None, margin_seconds: float, now: datetime
) -> bool:
    """Whether a job may ride any leader: placed by ``auto``, with a deadline further away
    than the escalation margin (a job without one is placed ``batch`` and rides any leader
    anyway; an explicit ``realtime`` or ``flex`` keeps its path)."""
    if requested != RequestedMode.auto or deadline is None:
        return False
    return deadline - now > timedelta(seconds=margin_seconds)


def _may_follow(mode: JobMode | None, leader: JobMode | None, *, patient: bool) -> bool:
    """A batch job (or a patient one) may ride any leader; a flex job a flex or realtime
    one (minutes, not the batch window); a realtime job only a realtime one."""
    if patient:
        return True
    if mode == JobMode.flex:
        return leader in (JobMode.flex, JobMode.realtime)
    return mode != JobMode.realtime or leader == JobMode.realtime


def live_leaders(
    session: Session, *, keys: Mapping[uuid.UUID, str], tenant_of: Mapping[uuid.UUID, uuid.UUID]
) -> Live:
    """The live leader of each (tenant, key) among the jobs' exact ``keys`` that has one.

    Ingest asks before it reads the cache, and the leaders found stay locked until its
    transaction ends (``jobs_coalescing.live_leaders``): a leader found live cannot end
    without settling the followers attached to it now, and one that ended before was
    committed with its cache write, which the cache lookup after this one reads.
    """
    by_tenant: dict[uuid.UUID, list[str]] = {}
    for job_id, key in keys.items():
        by_tenant.setdefault(tenant_of[job_id], []).append(key)
    return {
        (tenant_id, key): leader
        for tenant_id, tenant_keys in by_tenant.items()
        for key, leader in jobs_coalescing.live_leaders(
            session, tenant_id=tenant_id, keys=tenant_keys
        ).items()
    }


def riders(
    *,
    keys: Mapping[uuid.UUID, str],
    modes: Mapping[uuid.UUID, JobMode | None],
    tenant_of: Mapping[uuid.UUID, uuid.UUID],
    live: Live,
    patient: AbstractSet[uuid.UUID] = frozenset(),
) -> set[uuid.UUID]:
    """The jobs that will follow a live leader (no cache lookup needed for them)."""
    return {
        job_id
        for job_id, key in keys.items()
        if (leader := live.get((tenant_of[job_id], key))) is not None
        and _may_follow(modes[job_id], leader.mode, patient=job_id in patient)
    }


def near_leaders(
    session: Session,
    *,
    queries: Mapping[uuid.UUID, cache_service.NearQuery],
    tenant_of: Mapping[uuid.UUID, uuid.UUID],
) -> dict[uuid.UUID, jobs_coalescing.Leader]:
    """For documents that missed the cache (``queries``, from its lookup), a live leader
    whose document is a near-duplicate of theirs, checked as the cache checks a semantic
    hit (``cache_service.in_flight_matches``): the copy follows the original in flight as
    it would have taken its answer from the cache. The leaders are locked as
    ``live_leaders`` locks them."""
    by_tenant: dict[uuid.UUID, dict[uuid.UUID, cache_service.NearQuery]] = {}
    for job_id, query in queries.items():
        by_tenant.setdefault(tenant_of[job_id], {})[job_id] = query

    def documents(ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        found = job_repository.request_texts(session, ids=ids)
        return {job_id: text.document for job_id, text in found.items() if text.document}

    matches: dict[uuid.UUID, uuid.UUID] = {}
    for tenant_id, tenant_queries in by_tenant.items():
        matches |= cache_service.in_flight_matches(
            session,
            queries=tenant_queries,
            among=jobs_coalescing.live_leader_ids(tenant_id=tenant_id),
            texts=documents,
        )
    locked = jobs_coalescing.lock_live(session, ids=list(matches.values()))
    return {job_id: locked[leader] for job_id, leader in matches.items() if leader in locked}


def coalesce(
    *,
    misses: Sequence[RoutedJob],
    tenant_of: Mapping[uuid.UUID, uuid.UUID],
    live: Live,
    patient: AbstractSet[uuid.UUID] = frozenset(),
    near: Mapping[uuid.UUID, jobs_coalescing.Leader] | None = None,
) -> list[RoutedJob]:
    """The rows of ingest's cache misses (routed, ``waiting``) with who leads and who
    follows: a key with a ``live`` leader is followed (by the jobs whose mode may, or that
    are ``patient``); otherwise a key one of whose jobs has a ``near`` leader (a
    near-duplicate document in flight) follows that one; otherwise, and for the jobs of the
    key that may not follow, one job of the chunk per key leads (``coalesce_leader``) and
    the chunk's others with that key follow it."""
    near = near or {}
    rows: list[RoutedJob] = []
    groups: dict[tuple[uuid.UUID, str], list[RoutedJob]] = {}
    for row in misses:
        if row.cache_key is None:
            rows.append(row)
        else:
            groups.setdefault((tenant_of[row.id], row.cache_key), []).append(row)
    for group, members in groups.items():
        leader = live.get(group)
        if leader is None:
            similar = next((near[m.id] for m in members if m.id in near), None)
            if similar is not None:
                alone: list[RoutedJob] = []
                for m in members:
                    if _may_follow(m.mode, similar.mode, patient=m.id in patient):
                        rows.append(replace(m, coalesced_with=similar.id))
                    else:
                        alone.append(m)
                members = alone
                if not members:
                    continue
            # The fastest member leads, so every other may ride it.
            speed = {JobMode.realtime: 0, JobMode.flex: 1}
            first = min(members, key=lambda m: speed.get(m.mode, 2) if m.mode else 2)
            rows.append(replace(first, coalesce_leader=True))
            leader = jobs_coalescing.Leader(first.id, first.mode)
            members = [m for m in members if m is not first]
        for member in members:
            follows = _may_follow(member.mode, leader.mode, patient=member.id in patient)
            rows.append(replace(member, coalesced_with=leader.id) if follows else member)
    return rows
