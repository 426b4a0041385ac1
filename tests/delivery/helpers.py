"""Building finished jobs and driving deliveries in-process."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.delivery import service as delivery_service
from app.delivery.service import WebhookConfig
from app.jobs import events as job_events
from app.models import (
    DeliveryState,
    Job,
    JobGroup,
    JobState,
    Tenant,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from tests.factories import make_job


def make_group(session: Session, *, tenant: Tenant, size: int) -> JobGroup:
    group = JobGroup(tenant_id=tenant.id, size=size)
    session.add(group)
    session.flush()
    return group


def finish(
    session: Session,
    *,
    tenant: Tenant,
    state: JobState = JobState.completed,
    result: str = "Repairs finished early.",
    webhook_url: str | None = None,
    group: JobGroup | None = None,
    job: Job | None = None,
    config: WebhookConfig,
) -> Job:
    """A job (new unless given) ended in ``state``, and its deliveries recorded; committed."""
    if job is None:
        job = make_job(session, tenant=tenant, state=JobState.submitted)
    job.state = state
    job.webhook_url = webhook_url if webhook_url is not None else job.webhook_url
    job.group_id = group.id if group is not None else job.group_id
    if state == JobState.completed:
        job.result, job.input_tokens, job.output_tokens = result, 120, 30
        job.cost_usd, job.naive_cost_usd = Decimal("0.0001"), Decimal("0.0006")
    else:
        job.error = "provider error: boom"
    job.completed_at = utcnow()
    session.flush()
    job_events.jobs_finished(session, job_ids=[job.id], config=config)
    session.commit()
    return job


def deliveries(session: Session, **where: object) -> list[WebhookDelivery]:
    session.expire_all()
    query = select(WebhookDelivery).filter_by(**where).order_by(WebhookDelivery.created_at)
    return list(session.scalars(query))


def attempts(session: Session, delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    session.expire_all()
    query = (
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.number)
    )
    return list(session.scalars(query))


def attempt(
    session: Session, delivery: WebhookDelivery, *, config: WebhookConfig, due: bool = True
) -> DeliveryState | None:
    """One attempt now; with ``due``, at the moment the delivery is next due."""
    session.expire_all()
    row = session.get(WebhookDelivery, delivery.id)
    assert row is not None
    when = max(utcnow(), row.next_attempt_at) if due and row.next_attempt_at else None
    state = delivery_service.deliver(session, delivery_id=delivery.id, config=config, now=when)
    session.commit()
    return state
