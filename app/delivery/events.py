"""Recording the deliveries owed when jobs and groups end.

The jobs domain tells delivery what ended, as typed events carrying the public payloads
(``app/jobs/events.py`` builds them); delivery knows who listens and inserts one delivery row
per event and receiver, in the transaction that ended the jobs. A unique ``dedup_key``
(event, subject, receiver) makes recording twice harmless. The Celery hints are sent after
commit: up to ``DIRECT_HINTS`` one by one, more (a whole provider batch) as one wake-up of
the dispatcher, so the caller's transaction does not pay a message per delivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.delivery import repository, subscriptions
from app.delivery.config import WebhookConfig
from app.delivery.repository import NewDelivery
from app.delivery.schemas import GroupEventBody, JobEventBody, JobEventType
from app.kit import queue
from app.models import JobState, utcnow

JOB_EVENTS: Mapping[JobState, JobEventType] = {
    JobState.completed: "job.completed",
    JobState.failed: "job.failed",
}
GROUP_COMPLETED = "group.completed"
# Up to this many new deliveries are hinted one by one; more wake the dispatcher once.
DIRECT_HINTS = 20


@dataclass(frozen=True)
class JobEnded:
    """A job reached ``completed`` or ``failed`` (a cancelled job has no event of its own).

    ``payload`` is the job as ``GET /v1/jobs/{id}`` returns it (``JobOut``); when
    ``result_bytes`` is over the inline limit its ``result`` is sent as null. ``path`` is the
    job's place in the API (``/v1/jobs/{id}``).
    """

    tenant_id: uuid.UUID
    job_id: uuid.UUID
    group_id: uuid.UUID | None
    state: JobState
    webhook_url: str | None
    payload: BaseModel
    path: str
    result_bytes: int


@dataclass(frozen=True)
class GroupCompleted:
    """Every job of a group has ended; ``payload`` is ``GroupOut`` as ``GET /v1/groups/{id}``
    returns it, ``path`` and ``results_path`` its places in the API."""

    tenant_id: uuid.UUID
    group_id: uuid.UUID
    payload: BaseModel
    path: str
    results_path: str


@dataclass(frozen=True, slots=True)
class Subscriber:
    endpoint_id: uuid.UUID
    url: str
    events: frozenset[str]


@dataclass(frozen=True)
class Listeners:
    """The enabled endpoints of some tenants: who hears which event."""

    by_tenant: Mapping[uuid.UUID, tuple[Subscriber, ...]]

    def __bool__(self) -> bool:
        return bool(self.by_tenant)

    def of(self, tenant_id: uuid.UUID, event: str) -> list[Subscriber]:
        return [s for s in self.by_tenant.get(tenant_id, ()) if event in s.events]

    def hears(self, tenant_id: uuid.UUID, event: str) -> bool:
        """Whether an endpoint of the tenant subscribes to ``event``."""
        return any(event in s.events for s in self.by_tenant.get(tenant_id, ()))

    def hears_job(self, tenant_id: uuid.UUID, state: JobState, webhook_url: str | None) -> bool:
        """Whether a job that ended in ``state`` owes any delivery (its own URL or an endpoint)."""
        event = JOB_EVENTS.get(state)
        return event is not None and (bool(webhook_url) or self.hears(tenant_id, event))


def listeners(session: Session, *, tenant_ids: Sequence[uuid.UUID]) -> Listeners:
    """The tenants' enabled endpoints, in one query (ask before building any payload)."""
    by_tenant: dict[uuid.UUID, list[Subscriber]] = {}
    if tenant_ids:
        for endpoint in repository.enabled_endpoints(session, tenant_ids=tenant_ids):
            by_tenant.setdefault(endpoint.tenant_id, []).append(
                Subscriber(endpoint.id, endpoint.url, frozenset(endpoint.events))
            )
    return Listeners({tenant: tuple(subs) for tenant, subs in by_tenant.items()})


def record(
    session: Session,
    *,
    listeners: Listeners,
    jobs: Sequence[JobEnded] = (),
    groups: Sequence[GroupCompleted] = (),
    config: WebhookConfig | None = None,
) -> list[uuid.UUID]:
    """Record the deliveries owed for these events; returns the ids of the new ones.

    ``job.completed`` / ``job.failed`` go to the job's own ``webhook_url`` and to the
    tenant's endpoints subscribed to them, ``group.completed`` to subscribed endpoints.
    Call it in the transaction that ended the jobs; an event already recorded for a
    receiver is not recorded again.
    """
    config = config or WebhookConfig.from_settings()
    now = utcnow()
    first_delay = config.retry_schedule[0]
    stamp = _Stamp(now=now, due=now + timedelta(seconds=first_delay))

    for tenant_id in sorted({job.tenant_id for job in jobs if job.webhook_url}):
        subscriptions.tenant_secret_holder(session, tenant_id=tenant_id)
    rows: list[NewDelivery] = []
    for job in jobs:
        event = JOB_EVENTS.get(job.state)
        if event is None:
            continue
        receivers: list[tuple[uuid.UUID | None, str]] = [
            (s.endpoint_id, s.url) for s in listeners.of(job.tenant_id, event)
        ]
        if job.webhook_url:
            receivers.append((None, job.webhook_url))
        if not receivers:
            continue
        body = _job_body(job, event, now=now, config=config)
        rows += [
            stamp.delivery(
                event,
                job.job_id,
                tenant_id=job.tenant_id,
                endpoint_id=endpoint_id,
                url=url,
                body=body,
                job_id=job.job_id,
                group_id=job.group_id,
            )
            for endpoint_id, url in receivers
        ]
    for group in groups:
        subscribers = listeners.of(group.tenant_id, GROUP_COMPLETED)
        if not subscribers:
            continue
        body = GroupEventBody(
            type="group.completed",
            timestamp=now,
            url=config.public_base_url + group.path,
            results_url=config.public_base_url + group.results_path,
            data=group.payload,
        ).model_dump_json()
        rows += [
            stamp.delivery(
                GROUP_COMPLETED,
                group.group_id,
                tenant_id=group.tenant_id,
                endpoint_id=s.endpoint_id,
                url=s.url,
                body=body,
                job_id=None,
                group_id=group.group_id,
            )
            for s in subscribers
        ]
    return _insert_and_hint(session, rows, now=now, immediate=first_delay == 0)


@dataclass(frozen=True)
class _Stamp:
    """When a recording happens and when its deliveries are first due."""

    now: datetime
    due: datetime

    def delivery(
        self,
        event: str,
        subject: uuid.UUID,
        *,
        tenant_id: uuid.UUID,
        endpoint_id: uuid.UUID | None,
        url: str,
        body: str,
        job_id: uuid.UUID | None,
        group_id: uuid.UUID | None,
    ) -> NewDelivery:
        receiver = endpoint_id or "job-url"
        return NewDelivery(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            endpoint_id=endpoint_id,
            job_id=job_id,
            group_id=group_id,
            event=event,
            dedup_key=f"{event}:{subject}:{receiver}",
            message_id="msg_" + uuid.uuid4().hex,
            url=url,
            body=body,
            next_attempt_at=self.due,
            enqueued_at=None,
            created_at=self.now,
        )


def _job_body(job: JobEnded, event: JobEventType, *, now: datetime, config: WebhookConfig) -> str:
    omitted = job.result_bytes > config.max_inline_result_bytes
    # A large result is left to the API (the link), so bodies stay small.
    data = job.payload.model_copy(update={"result": None}) if omitted else job.payload
    return JobEventBody(
        type=event,
        timestamp=now,
        url=config.public_base_url + job.path,
        result_omitted=omitted,
        data=data,
    ).model_dump_json()


def _insert_and_hint(
    session: Session, rows: list[NewDelivery], *, now: datetime, immediate: bool
) -> list[uuid.UUID]:
    direct = immediate and len(rows) <= DIRECT_HINTS
    if direct:
        # Stamped as hinted, so the dispatcher leaves them to the hints sent below.
        rows = [replace(r, enqueued_at=now) for r in rows]
    ids = repository.insert_deliveries(session, rows)
    if immediate and ids:
        if direct:
            for delivery_id in ids:
                queue.enqueue(session, queue.DELIVER_WEBHOOK, str(delivery_id))
        else:
            # Many at once (a whole provider batch): one wake-up for the dispatcher, which
            # hints them from the delivery queue instead of holding up this transaction.
            queue.enqueue(session, queue.DISPATCH_WEBHOOKS)
    return ids
