"""Jobs: accepting submissions, reading them back, and ingest (cache lookup, then routing)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from app.accounting import service as accounting_service
from app.batching import service as batching_service
from app.cache import service as cache_service
from app.catalog.catalog import Catalog
from app.delivery import service as delivery_service
from app.embeddings import service as embedding_service
from app.embeddings.base import Embedder
from app.jobs import events as job_events
from app.jobs import repository
from app.jobs.schemas import (
    GroupCancelled,
    GroupOut,
    JobIn,
    JobPage,
    SubmitResponse,
    SubmittedJob,
)
from app.jobs.views import group_out, to_out
from app.kit import queue
from app.kit.errors import Conflict, NotFound, ValidationFailed
from app.kit.prompts import DEFAULT_INSTRUCTION, user_content
from app.kit.text import estimate_tokens
from app.models import Job, JobGroup, JobState, Tenant, utcnow
from app.routing import service as routing_service

# Job ids per ingest message: big enough to batch the work, small enough to spread it.
INGEST_CHUNK = 1000


# The columns routing sets (see _route).
_ROUTE_COLUMNS = ("provider", "model", "mode", "route_reason", "estimated_tokens",
                  "estimated_bytes", "routed_at", "error", "completed_at")  # fmt: skip


_INPUTS = tuple(f.name for f in fields(repository.QueuedJob))


def _inputs(row: dict[str, Any]) -> repository.QueuedJob:
    """A job row about to be stored, as the inputs routing reads."""
    return repository.QueuedJob(*(row[name] for name in _INPUTS))


def _route(job: repository.QueuedJob, *, catalog: Catalog, now: datetime) -> dict[str, Any]:
    """Where ``job`` runs, as the values of ``_ROUTE_COLUMNS`` plus its new state: ``waiting``
    in its window, or ``failed`` when no model can take it."""
    text = user_content(job)
    tokens = estimate_tokens(text) + estimate_tokens(job.system or "")
    try:
        route = routing_service.route(
            catalog,
            text=text,
            tokens=tokens,
            instruction=job.instruction,
            model_hint=job.model_hint,
            tier_hint=job.tier_hint,
        )
    except routing_service.NoRoute as exc:
        return dict.fromkeys(_ROUTE_COLUMNS) | {
            "state": JobState.failed,
            "error": str(exc),
            "estimated_tokens": tokens,
            "completed_at": now,
        }
    mode, why = routing_service.choose_mode(
        catalog, provider=route.provider, requested=job.requested_mode, deadline=job.deadline,
        now=now,
    )  # fmt: skip
    return {
        "state": JobState.waiting,
        "provider": route.provider,
        "model": route.model,
        "mode": mode,
        "route_reason": f"{route.reason}; {mode} mode ({why})",
        "estimated_tokens": tokens,
        "estimated_bytes": batching_service.estimate_bytes(job),
        "routed_at": now,
        "error": None,
        "completed_at": None,
    }


def submit(
    session: Session, *, tenant: Tenant, items: list[JobIn], as_group: bool, catalog: Catalog
) -> SubmitResponse:
    """Store the jobs in one transaction and enqueue their next step once it commits.

    Either every job is stored or none is. A job whose idempotency key the tenant used before
    is not stored again: the earlier job is returned with ``existing=True``. A job that may be
    answered from the cache is stored ``queued`` for ingest; one that skips the cache
    (``cache: bypass``) has nothing to wait for, so it is routed here and stored ``waiting``
    in its window (or ``failed`` when no model can take it), or ``batched`` when such jobs
    fill a window by themselves (``batching_service.flush_on_arrival``).
    """
    keys = [item.idempotency_key for item in items if item.idempotency_key is not None]
    duplicated = [key for key, n in Counter(keys).items() if n > 1]
    if duplicated:
        raise ValidationFailed(
            f"idempotency_key repeated within one request: {', '.join(duplicated[:5])}"
        )
    for item in items:
        routing_service.validate_hints(catalog, model=item.model, tier=item.tier)
    # SSRF: refuse receivers on internal addresses now; delivery checks them again.
    for url in sorted({str(item.webhook_url) for item in items if item.webhook_url}):
        delivery_service.check_url(url, field="webhook_url")

    earlier = repository.find_by_keys(session, tenant_id=tenant.id, keys=keys) if keys else {}
    fresh = [item for item in items if item.idempotency_key not in earlier]

    group: JobGroup | None = None
    if as_group and fresh:
        group = JobGroup(tenant_id=tenant.id, size=len(fresh))
        session.add(group)
        session.flush()

    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant.id,
            "group_id": group.id if group else None,
            "state": JobState.queued,
            "prompt": item.prompt,
            "document": item.document,
            "instruction": (
                (item.instruction or DEFAULT_INSTRUCTION) if item.document is not None else None
            ),
            "system": item.system,
            "max_output_tokens": item.max_output_tokens,
            "model_hint": item.model,
            "tier_hint": item.tier,
            "metadata": item.metadata,
            "idempotency_key": item.idempotency_key,
            "webhook_url": str(item.webhook_url) if item.webhook_url else None,
            "cache_hit": False,
            "temperature": item.temperature,
            "cache_mode": item.cache,
            "semantic_cache": item.semantic_cache,
            "requested_mode": item.mode,
            "deadline": item.deadline,
            "priority": item.priority,
            "created_at": now,
            "updated_at": now,
        }
        for item in fresh
    ]
    unrouted = dict.fromkeys(_ROUTE_COLUMNS) | {"state": JobState.queued}
    for row in rows:
        skips_cache = row["cache_mode"] == "bypass"
        row |= _route(_inputs(row), catalog=catalog, now=now) if skips_cache else unrouted
        row["provider_batch_id"] = None
    # A bulk submission that fills a window by itself leaves in a batch at once. Keyed jobs
    # wait for the collector: a key seen before means the row is not inserted at all.
    arriving = [r for r in rows if r["state"] == JobState.waiting and not r["idempotency_key"]]
    placed = batching_service.flush_on_arrival(
        session,
        arrivals=[
            batching_service.Arrival(
                r["provider"],
                r["model"],
                r["mode"],
                r["priority"],
                r["estimated_tokens"],
                r["estimated_bytes"],
            )
            for r in arriving
        ],
        catalog=catalog,
    )
    for row, batch_id in zip(arriving, placed, strict=True):
        if batch_id is not None:
            row["state"], row["provider_batch_id"] = JobState.batched, batch_id
    inserted = repository.insert_many(session, rows)
    if len(inserted) < len(rows):
        # A concurrent request stored some of these keys between our check and our insert.
        raced = [r["idempotency_key"] for r in rows if r["id"] not in inserted]
        earlier.update(repository.find_by_keys(session, tenant_id=tenant.id, keys=raced))
        if group is not None:
            group.size = len(inserted)
    new_by_key = {r["idempotency_key"]: r["id"] for r in rows if r["id"] in inserted}
    new_unkeyed = iter(r["id"] for r in rows if r["id"] in inserted and not r["idempotency_key"])
    states: dict[uuid.UUID, JobState] = {r["id"]: r["state"] for r in rows}

    submitted: list[SubmittedJob] = []
    for item in items:
        key = item.idempotency_key
        if key is not None and key in earlier and key not in new_by_key:
            job_id, state, _ = earlier[key]
            submitted.append(
                SubmittedJob(id=job_id, state=state, idempotency_key=key, existing=True)
            )
        else:
            job_id = new_by_key[key] if key is not None else next(new_unkeyed)
            submitted.append(
                SubmittedJob(id=job_id, state=states[job_id], idempotency_key=key, existing=False)
            )

    new = [row for row in rows if row["id"] in inserted]
    queued = [str(row["id"]) for row in new if row["state"] == JobState.queued]
    for start in range(0, len(queued), INGEST_CHUNK):
        queue.enqueue(session, queue.INGEST, queued[start : start + INGEST_CHUNK])
    if any(row["state"] == JobState.waiting for row in new):
        queue.enqueue(session, queue.COLLECT)
    job_events.jobs_finished(
        session, job_ids=[row["id"] for row in new if row["state"] == JobState.failed]
    )

    group_id = group.id if group is not None else None
    if as_group and group is None:
        # A list resubmitted in full: answer with the group its jobs already belong to.
        earlier_groups = {earlier[key][2] for key in keys}
        group_id = earlier_groups.pop() if len(earlier_groups) == 1 else None
    return SubmitResponse(group_id=group_id, count=len(submitted), jobs=submitted)


def get_job(session: Session, *, tenant: Tenant, job_id: uuid.UUID) -> Job:
    job = repository.get(session, tenant_id=tenant.id, job_id=job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def get_group(session: Session, *, tenant: Tenant, group_id: uuid.UUID) -> GroupOut:
    """A bulk submission's progress by state, with its usage and cost so far."""
    group = repository.get_group(session, tenant_id=tenant.id, group_id=group_id)
    if group is None:
        raise NotFound(f"no group {group_id}")
    return group_out(session, group)


def list_group_jobs(
    session: Session, *, tenant: Tenant, group_id: uuid.UUID, after: uuid.UUID | None, limit: int
) -> JobPage:
    group = repository.get_group(session, tenant_id=tenant.id, group_id=group_id)
    if group is None:
        raise NotFound(f"no group {group_id}")
    jobs = repository.list_group_jobs(session, group_id=group.id, after=after, limit=limit)
    next_after = jobs[-1].id if len(jobs) == limit else None
    return JobPage(data=[to_out(job) for job in jobs], next_after=next_after)


def iter_group_results(session: Session, *, group_id: uuid.UUID, page: int = 500) -> Iterator[str]:
    """A group's jobs as JSON lines (one JobOut each), read a page at a time."""
    after: uuid.UUID | None = None
    while True:
        jobs = repository.list_group_jobs(session, group_id=group_id, after=after, limit=page)
        for job in jobs:
            yield to_out(job).model_dump_json() + "\n"
        if len(jobs) < page:
            return
        after = jobs[-1].id
        session.expunge_all()  # keep memory flat on large groups


def cancel_job(session: Session, *, tenant: Tenant, job_id: uuid.UUID) -> Job:
    """Cancel one job that has not ended. Raises ``Conflict`` when it already has.

    Before submission the job simply leaves its window (or its not-yet-sent batch); after
    submission its late result is ignored, and the poller cancels the provider batch once
    every job in it is cancelled.
    """
    job = get_job(session, tenant=tenant, job_id=job_id)
    if not repository.cancel_one(session, tenant_id=tenant.id, job_id=job.id, now=utcnow()):
        session.refresh(job)
        raise Conflict(f"job {job_id} already ended ({job.state.value}); nothing to cancel")
    session.refresh(job)
    job_events.jobs_finished(session, job_ids=[job.id])
    return job


def cancel_group(session: Session, *, tenant: Tenant, group_id: uuid.UUID) -> GroupCancelled:
    """Cancel every job of the group that has not ended; finished jobs keep their results.

    A job already handed to the provider is cancelled here too: its result, if one still
    arrives, is not applied.
    """
    group = repository.get_group(session, tenant_id=tenant.id, group_id=group_id)
    if group is None:
        raise NotFound(f"no group {group_id}")
    cancelled = repository.cancel_unfinished(session, group_id=group.id, now=utcnow())
    job_events.jobs_finished(session, job_ids=cancelled)
    return GroupCancelled(
        cancelled=len(cancelled), group=get_group(session, tenant=tenant, group_id=group_id)
    )


def ingest(
    session: Session,
    *,
    job_ids: list[uuid.UUID],
    catalog: Catalog,
    embedder: Callable[[], Embedder] | None = None,
) -> int:
    """Answer queued jobs from the cache or route them into a window. Returns jobs handled.

    Only jobs still ``queued`` are touched, under row locks, so a repeated or concurrent
    message does nothing twice. The outcome is written in two statements (routed or failed
    jobs, then cache answers), not one per job.
    """
    jobs = repository.lock_queued(session, ids=job_ids)
    if not jobs:
        return 0
    now = utcnow()
    routed: dict[uuid.UUID, dict[str, Any]] = {}
    failed: list[dict[str, Any]] = []
    tiers: dict[uuid.UUID, str] = {}
    for job in jobs:
        row = {"id": job.id, **_route(job, catalog=catalog, now=now), "cache_key": None,
               "updated_at": now}  # fmt: skip
        if row["state"] == JobState.failed:
            failed.append(row)
            continue
        tiers[job.id] = catalog.model(row["model"]).tier
        routed[job.id] = row

    # Exact, then semantic (one embedding call for the whole chunk), then verification.
    lookup = cache_service.lookup_jobs(
        session,
        jobs=[job for job in jobs if job.id in routed],
        tiers=tiers,
        embedder=embedder or embedding_service.get_embedder,
    )
    waiting: list[dict[str, Any]] = []
    answered: list[dict[str, Any]] = []
    for job_id, row in routed.items():
        row["cache_key"] = lookup.keys.get(job_id)
        hit = lookup.hits.get(job_id)
        if hit is None:
            waiting.append(row)
            continue
        entry = hit.entry
        answered.append(
            row
            | {
                "state": JobState.completed,
                "model": entry.model,
                "cache_hit": True,
                "cached_from_job_id": entry.source_job_id,
                "cache_similarity": round(hit.similarity, 4),
                "result": entry.result,
                "input_tokens": entry.input_tokens,
                "output_tokens": entry.output_tokens,
                "cost_usd": Decimal(0),
                "naive_cost_usd": accounting_service.naive_price(
                    catalog, input_tokens=entry.input_tokens, output_tokens=entry.output_tokens
                ),
                "completed_at": now,
            }
        )
    for rows in (waiting + failed, answered):
        repository.write_outcomes(session, rows)
    if waiting:
        queue.enqueue(session, queue.COLLECT)
    job_events.jobs_finished(session, job_ids=[row["id"] for row in (*answered, *failed)])
    return len(jobs)
