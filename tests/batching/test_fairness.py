"""Tenants in the same model's window get a weighted fair share of each batch (priority still
orders jobs inside a tenant), so a tenant with a huge backlog does not claim ahead of a
small one."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.batching import collector
from app.batching.fairness import fair_quotas, interleave
from app.catalog.catalog import get_catalog
from app.models import Job, JobState, Tenant
from tests.batching.helpers import waiting_jobs, with_models
from tests.conftest import make_tenant


def test_quotas_share_by_weight_and_pass_on_what_a_tenant_cannot_use() -> None:
    assert fair_quotas({"a": 5000, "b": 10}, {"a": 1, "b": 1}, 1000) == {"a": 990, "b": 10}
    assert fair_quotas({"a": 5000, "b": 5000}, {"a": 1, "b": 3}, 1000) == {"a": 250, "b": 750}
    assert fair_quotas({"a": 2, "b": 2, "c": 9}, {"a": 1, "b": 1, "c": 1}, 10) == {
        "a": 2,
        "b": 2,
        "c": 6,
    }
    assert sum(fair_quotas({"a": 7, "b": 7, "c": 7}, {"a": 1, "b": 1, "c": 1}, 10).values()) == 10
    assert fair_quotas({"a": 3}, {"a": 1}, 10) == {"a": 3}


def test_interleave_keeps_each_tenants_order_and_alternates_by_weight() -> None:
    merged = interleave({"a": ["a1", "a2", "a3", "a4"], "b": ["b1", "b2"]}, {"a": 1, "b": 1})
    assert merged == ["a1", "b1", "a2", "b2", "a3", "a4"]
    weighted = interleave({"a": ["a1", "a2"], "b": ["b1", "b2", "b3", "b4"]}, {"a": 1, "b": 2})
    assert weighted == ["b1", "a1", "b2", "b3", "a2", "b4"]


def test_a_big_backlog_does_not_claim_ahead_of_a_small_tenant(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    big = tenant[0]
    small, _ = make_tenant(db, name="small")
    flooding = waiting_jobs(db, big, 120)
    for job in flooding:
        job.priority = 10  # the big tenant's priority does not jump the other tenant's queue
    db.commit()
    mine = waiting_jobs(db, small, 8)
    catalog = with_models(get_catalog(), max_size=40)

    created = collector.collect(db, catalog=catalog, max_batches=1)
    db.commit()

    claimed = Counter(
        db.scalars(select(Job.tenant_id).where(Job.provider_batch_id == created[0])).all()
    )
    assert claimed == {small.id: 8, big.id: 32}
    db.expire_all()
    assert all(db.get(Job, j.id).state == JobState.batched for j in mine)  # type: ignore[union-attr]


def test_weights_share_a_batch_and_priority_orders_inside_a_tenant(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    light = tenant[0]
    heavy, _ = make_tenant(db, name="heavy")
    heavy.share_weight = 3
    db.commit()
    light_jobs = waiting_jobs(db, light, 40)
    urgent = light_jobs[-3:]
    for job in urgent:
        job.priority = 5
    db.commit()
    waiting_jobs(db, heavy, 40)
    catalog = with_models(get_catalog(), max_size=20)

    created = collector.collect(db, catalog=catalog, max_batches=1)
    db.commit()

    in_batch = db.scalars(select(Job.id).where(Job.provider_batch_id == created[0])).all()
    tenants = Counter(db.scalars(select(Job.tenant_id).where(Job.id.in_(in_batch))).all())
    assert tenants == {light.id: 5, heavy.id: 15}
    assert {j.id for j in urgent} <= set(in_batch)  # the light tenant's urgent jobs first
