"""Accepting a submission: validation, idempotency, admission routing and the arrival flush."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from datetime import datetime

from sqlalchemy.orm import Session

from app.batching import service as batching_service
from app.catalog.catalog import Catalog
from app.config import get_settings
from app.delivery import service as delivery_service
from app.intake import budgets as intake_budgets
from app.intake.placement import (
    UNROUTED,
    Placement,
    context_overflow,
    enqueued_load,
    in_flight_load,
    place,
)
from app.intake.strategy import rules_note
from app.jobs import repository as job_repository
from app.jobs import transitions
from app.jobs.repository import ExistingJob
from app.jobs.rows import NewJob
from app.jobs.schemas import JobIn, SubmitResponse, SubmittedJob
from app.kit import queue
from app.kit.errors import IdempotencyConflict, TooManyRequests, ValidationFailed
from app.kit.prompts import DEFAULT_INSTRUCTION
from app.models import CacheMode, JobState, Tenant, utcnow
from app.routing import service as routing_service
from app.routing.budgets import Exceeded
from app.routing.strategies import Strategy, TenantRouting

# Job ids per ingest message: big enough to batch the work (one exact query, one
# near-duplicate query, one embedding call per chunk), small enough to spread a bulk
# submission over every ingest process: at 1,000 a submission of 1,000 documents was one
# task on one process for 34.5 s while the others idled; a chunk of 250 documents took 4.5-5 s
# on the loaded 2-core machine (docs/benchmarks.md, bench.ingest).
INGEST_CHUNK = 250


def _validate(items: list[JobIn], *, keys: list[str], catalog: Catalog) -> None:
    """Refuse the whole submission before anything is stored."""
    duplicated = [key for key, n in Counter(keys).items() if n > 1]
    if duplicated:
        raise ValidationFailed(
            f"idempotency_key repeated within one request: {', '.join(duplicated[:5])}"
        )
    for index, item in enumerate(items):
        routing_service.validate_hints(catalog, model=item.model, tier=item.tier, mode=item.mode)
        overflow = context_overflow(item, model_hint=item.model, catalog=catalog)
        if overflow is not None:
            raise ValidationFailed(f"jobs[{index}]: {overflow}" if len(items) > 1 else overflow)
    # SSRF: refuse receivers on internal addresses now; delivery checks them again.
    for url in sorted({str(item.webhook_url) for item in items if item.webhook_url}):
        delivery_service.check_url(url, field="webhook_url")


def submit(
    session: Session,
    *,
    tenant: Tenant,
    items: list[JobIn],
    as_group: bool,
    catalog: Catalog,
    group_id: uuid.UUID | None = None,
) -> SubmitResponse:
    """Store the jobs in one transaction and enqueue their next step once it commits.

    Either every job is stored or none is. A job whose idempotency key the tenant used before
    is not stored again: the earlier job is returned with ``existing=True``. A job that may be
    answered from the cache is stored ``queued`` for ingest; one that skips the cache
    (``cache: bypass``) has nothing to wait for, so it is routed here and stored ``waiting``
    in its window (or ``failed`` when no model can take it), or ``batched`` when such jobs
    fill a window by themselves (``batching_service.flush_on_arrival``). ``group_id`` adds
    the jobs to a group the caller made (an OpenAI batch submitted in parts).
    """
    keys = [item.idempotency_key for item in items if item.idempotency_key is not None]
    _validate(items, keys=keys, catalog=catalog)

    hashes = {item.idempotency_key: request_hash(item) for item in items if item.idempotency_key}
    earlier = job_repository.find_by_keys(session, tenant_id=tenant.id, keys=keys) if keys else {}
    _check_replay(session, items, earlier=earlier, hashes=hashes, as_group=as_group)
    fresh = [item for item in items if item.idempotency_key not in earlier]
    if fresh:
        _check_unfinished(session, tenant=tenant, adding=len(fresh))

    if as_group and fresh:
        group_id = transitions.create_group(session, tenant_id=tenant.id, size=len(fresh))

    now = utcnow()
    # A tenant with a budget: its lock, then what it may still commit (spent + in flight).
    room = intake_budgets.open_allowance(session, tenant=tenant, now=now) if fresh else None
    places = _Places(session, tenant=tenant, catalog=catalog, now=now, fresh=fresh,
                     reserve=room is not None)  # fmt: skip
    instructions, placements = places.instructions, places.placements
    if room is not None:
        # Past the budget: refused whole (reject, or a pinned job), or to cheaper models.
        placements = intake_budgets.admit(room, items=fresh, placements=placements, now=now,
                                          downgrade=places.downgraded)  # fmt: skip
    batch_ids = _flush_arrivals(session, fresh, placements, catalog=catalog)
    rows = [
        NewJob(
            id=uuid.uuid4(),
            tenant_id=tenant.id,
            group_id=group_id,
            state=placement.state if batch_id is None else JobState.batched,
            prompt=item.prompt,
            document=item.document,
            instruction=instruction,
            system=item.system,
            history=item.history,
            max_output_tokens=item.max_output_tokens,
            model_hint=item.model,
            tier_hint=item.tier,
            metadata=item.metadata,
            idempotency_key=item.idempotency_key,
            webhook_url=str(item.webhook_url) if item.webhook_url else None,
            cache_hit=False,
            temperature=item.temperature,
            cache_mode=item.cache,
            semantic_cache=item.semantic_cache,
            requested_mode=item.mode,
            deadline=item.deadline,
            priority=item.priority,
            created_at=now,
            updated_at=now,
            provider=placement.provider,
            model=placement.model,
            mode=placement.mode,
            route_reason=placement.route_reason,
            estimated_tokens=placement.estimated_tokens,
            estimated_bytes=placement.estimated_bytes,
            routed_at=placement.routed_at,
            error=placement.error,
            completed_at=placement.completed_at,
            provider_batch_id=batch_id,
            request_hash=hashes.get(item.idempotency_key) if item.idempotency_key else None,
            routing=placement.routing,
            quality_target=item.quality_target,
            reserved_usd=placement.reserved_usd,
        )
        for item, instruction, placement, batch_id in zip(
            fresh, instructions, placements, batch_ids, strict=True
        )
    ]
    inserted = transitions.insert_many(session, rows)
    if len(inserted) < len(rows):
        # A concurrent request stored some of these keys between our check and our insert:
        # as Stripe does for a key in flight, refuse (the session rolls everything back);
        # retried, the request finds the jobs stored and gets them back.
        raced = [r.idempotency_key or "" for r in rows if r.id not in inserted]
        raise IdempotencyConflict(
            "a concurrent request is using these idempotency keys; retry: " + ", ".join(raced[:5])
        )
    new = rows
    submitted = _answers(items, earlier=earlier, new=new)

    queued = [str(row.id) for row in new if row.state == JobState.queued]
    for start in range(0, len(queued), INGEST_CHUNK):
        queue.enqueue(session, queue.INGEST, queued[start : start + INGEST_CHUNK])
    if any(row.state == JobState.waiting for row in new):
        queue.enqueue(session, queue.COLLECT)

    if as_group and group_id is None:
        # A list resubmitted in full (checked by _check_replay): its original group.
        group_id = earlier[keys[0]].group_id
    return SubmitResponse(group_id=group_id, count=len(submitted), jobs=submitted)


def _check_unfinished(session: Session, *, tenant: Tenant, adding: int) -> None:
    """A tenant may have at most so many jobs not yet ended; more wait for those to end."""
    cap = tenant.max_unfinished_jobs or get_settings().tenant_max_unfinished_jobs
    unfinished = job_repository.count_unfinished(session, tenant_id=tenant.id, up_to=cap + 1)
    if unfinished + adding > cap:
        raise TooManyRequests(
            f"{unfinished} unfinished jobs and {adding} more would pass this tenant's cap of "
            f"{cap}; wait for some to end",
            retry_after=get_settings().poll_retry_after_seconds,
            type_="too_many_unfinished_jobs",
        )


def request_hash(item: JobIn) -> str:
    """A job's payload fingerprint: the same fields and values (defaults filled in, object
    keys in any order) give the same hash."""
    # An unset quality target stays out, so the hashes of jobs stored before it existed hold.
    unset = {"quality_target"} if item.quality_target is None else set()
    payload = item.model_dump(mode="json", exclude={"idempotency_key", *unset})
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_replay(
    session: Session,
    items: list[JobIn],
    *,
    earlier: dict[str, ExistingJob],
    hashes: dict[str, str],
    as_group: bool,
) -> None:
    """Stripe's idempotency: a key sent again with the same payload returns the original;
    with another payload it is refused (409 ``idempotency_conflict``). A list is one
    request: sent again whole it returns its group, but a list mixing jobs stored before
    with others is another request reusing keys, refused too (so an answer's ``count``
    always equals its group's ``size``)."""
    if not earlier:
        return
    changed = [
        key
        for key, job in earlier.items()
        if job.request_hash is not None and job.request_hash != hashes[key]
    ]
    if changed:
        raise IdempotencyConflict(
            "idempotency key reused with a different payload: " + ", ".join(sorted(changed)[:5]),
            details=[{"loc": ["idempotency_key"], "message": key, "type": "idempotency_conflict"}
                     for key in sorted(changed)[:100]],
        )  # fmt: skip
    if not as_group:
        return
    groups = {job.group_id for job in earlier.values()}
    group = groups.pop() if len(groups) == 1 else None
    whole = (
        len(earlier) == len(items)
        and group is not None
        and job_repository.group_size(session, group_id=group) == len(items)
    )
    if not whole:
        raise IdempotencyConflict(
            f"{len(earlier)} of these {len(items)} jobs reuse idempotency keys of an earlier "
            "submission that was not this same list; send that list again to get it back, "
            "or use new keys"
        )


class _Places:
    """Each job's stored instruction (documents default to summarise) and its placement:
    routed now when it skips the cache and the rules route it, else left for ingest (a
    ``learned`` or ``semantic`` tenant's prompts are embedded there, not in the API). With
    ``reserve`` (a tenant with a budget), a job left for ingest carries the expected cost of
    its rules route as its reservation."""

    def __init__(
        self,
        session: Session,
        *,
        tenant: Tenant,
        catalog: Catalog,
        now: datetime,
        fresh: list[JobIn],
        reserve: bool,
    ) -> None:
        self.catalog, self.now, self.fresh, self.reserve = catalog, now, fresh, reserve
        self.settings = TenantRouting.of(tenant.routing_strategy, tenant.quality_target)
        self.embeds = self.settings.strategy != Strategy.rules  # learned or semantic: at ingest
        routed_here = any(item.cache == CacheMode.bypass for item in fresh)
        self.load = enqueued_load(session, catalog) if routed_here else None
        self.busy = in_flight_load(session, catalog) if routed_here else None
        self.instructions: list[str | None] = [
            (item.instruction or DEFAULT_INSTRUCTION) if item.document is not None else None
            for item in fresh
        ]
        self.placements = [self._placement(index) for index in range(len(fresh))]

    def _placement(self, index: int, budget: Exceeded | None = None) -> Placement:
        item = self.fresh[index]
        note = (
            rules_note(model_hint=item.model, tier_hint=item.tier, document=item.document)
            if self.embeds
            else None
        )
        here = item.cache == CacheMode.bypass and (not self.embeds or note is not None)
        if not here and not self.reserve:
            return UNROUTED
        placement = place(
            item,
            instruction=self.instructions[index],
            model_hint=item.model,
            tier_hint=item.tier,
            requested_mode=item.mode,
            deadline=item.deadline,
            catalog=self.catalog,
            now=self.now,
            max_output_tokens=item.max_output_tokens,
            strategy=self.settings.strategy,
            note=note,
            budget=budget,
            load=self.load if here else None,
            busy=self.busy if here else None,
        )
        return placement if here else UNROUTED._replace(reserved_usd=placement.reserved_usd)

    def downgraded(self, index: int, budget: Exceeded) -> Placement:
        """The job at ``index`` placed again for a ``downgrade`` tenant past ``budget``."""
        return self._placement(index, budget)


def _flush_arrivals(
    session: Session, fresh: list[JobIn], placements: list[Placement], *, catalog: Catalog
) -> list[uuid.UUID | None]:
    """Per job, the pending batch it goes straight into, if any.

    A bulk submission that fills a window by itself leaves in a batch at once. Keyed jobs
    wait for the collector: a key seen before means the row is not inserted at all.
    """
    arriving = [
        index
        for index, (item, placement) in enumerate(zip(fresh, placements, strict=True))
        if placement.state == JobState.waiting and not item.idempotency_key
    ]
    placed = batching_service.flush_on_arrival(
        session,
        arrivals=[
            _arrival(placements[index], priority=fresh[index].priority) for index in arriving
        ],
        catalog=catalog,
    )
    batch_ids: list[uuid.UUID | None] = [None] * len(fresh)
    for index, batch_id in zip(arriving, placed, strict=True):
        batch_ids[index] = batch_id
    return batch_ids


def _arrival(placement: Placement, *, priority: int) -> batching_service.Arrival:
    """A routed job as the arrival flush sees it."""
    # Set on every waiting placement.
    assert placement.provider is not None
    assert placement.model is not None
    assert placement.mode is not None
    assert placement.estimated_tokens is not None
    assert placement.estimated_bytes is not None
    return batching_service.Arrival(
        placement.provider,
        placement.model,
        placement.mode,
        priority,
        placement.estimated_tokens,
        placement.estimated_bytes,
    )


def _answers(
    items: list[JobIn], *, earlier: dict[str, ExistingJob], new: list[NewJob]
) -> list[SubmittedJob]:
    """One answer per submitted item, in order: the job stored now, or the earlier one its
    idempotency key names."""
    new_by_key = {row.idempotency_key: row for row in new if row.idempotency_key}
    new_unkeyed = iter(row for row in new if not row.idempotency_key)
    submitted: list[SubmittedJob] = []
    for item in items:
        key = item.idempotency_key
        if key is not None and key in earlier and key not in new_by_key:
            existing = earlier[key]
            submitted.append(
                SubmittedJob(id=existing.id, state=existing.state, idempotency_key=key,
                             existing=True)
            )  # fmt: skip
        else:
            row = new_by_key[key] if key is not None else next(new_unkeyed)
            submitted.append(
                SubmittedJob(id=row.id, state=row.state, idempotency_key=key, existing=False)
            )
    return submitted
