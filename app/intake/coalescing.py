"""Coalescing at ingest: identical requests are sent to the provider once.

Requests are identical when they have the same tenant and exact cache key
(``app/cache/keys.py``: the request text and its whole scope). Among the cache misses of an
ingest chunk, and against the jobs already waiting, batched or at the provider, each key has
one leader, sent as usual; the others follow it (``waiting`` outside every window, with
``coalesced_with``) and complete from its result when it ends, at cost 0
(``app/jobs/coalescing.py``). Jobs that skip the cache (``bypass``) have no key and are
never coalesced.

A realtime job does not wait on a leader in a Batch API window (it would miss what it was
routed realtime for): it goes through alone. In a chunk, a realtime job leads its key.

Two processes electing a leader for one key at once cannot both win: the unique partial
index ``uq_jobs_live_leader`` refuses the second, whose ingest looks again (``ingest``) and
finds the first.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace

from sqlalchemy.orm import Session

from app.jobs import coalescing as jobs_coalescing
from app.jobs.rows import RoutedJob
from app.models import JobMode


def _may_follow(mode: JobMode | None, leader: JobMode | None) -> bool:
    """A batch job may ride any leader; a realtime job only a realtime one."""
    return mode != JobMode.realtime or leader == JobMode.realtime


def coalesce(
    session: Session, *, misses: Sequence[RoutedJob], tenant_of: Mapping[uuid.UUID, uuid.UUID]
) -> list[RoutedJob]:
    """The rows of ingest's cache misses (routed, ``waiting``) with who leads and who
    follows: a key with a live leader is followed; otherwise one job of the chunk per key
    leads (``coalesce_leader``) and the chunk's others with that key follow it. The live
    leaders found stay locked until the transaction ends (``live_leaders``)."""
    rows: list[RoutedJob] = []
    groups: dict[tuple[uuid.UUID, str], list[RoutedJob]] = {}
    for row in misses:
        if row.cache_key is None:
            rows.append(row)
        else:
            groups.setdefault((tenant_of[row.id], row.cache_key), []).append(row)
    keys: dict[uuid.UUID, list[str]] = {}
    for tenant_id, key in groups:
        keys.setdefault(tenant_id, []).append(key)
    live = {
        (tenant_id, key): leader
        for tenant_id, tenant_keys in keys.items()
        for key, leader in jobs_coalescing.live_leaders(
            session, tenant_id=tenant_id, keys=tenant_keys
        ).items()
    }
    for group, members in groups.items():
        leader = live.get(group)
        if leader is None:
            first = next((m for m in members if m.mode == JobMode.realtime), members[0])
            rows.append(replace(first, coalesce_leader=True))
            leader = jobs_coalescing.Leader(first.id, first.mode)
            members = [m for m in members if m is not first]
        for member in members:
            follows = _may_follow(member.mode, leader.mode)
            rows.append(replace(member, coalesced_with=leader.id) if follows else member)
    return rows
