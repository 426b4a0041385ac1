"""A slow receiver is isolated: at most ``receiver_concurrency`` hints are out and attempts in
flight per receiver (scheme://host:port), so its backlog never holds the delivery pool that
other tenants' receivers need."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text, update
from sqlalchemy.orm import Session

from app.delivery import service as delivery_service
from app.delivery.attempts import BUSY_RECEIVER_DELAY
from app.kit.db import get_engine
from app.models import Tenant, WebhookDelivery, utcnow
from tests.delivery.helpers import attempt, attempts, deliveries, finish
from tests.delivery.test_deliveries import CONFIG

SLOW = "http://127.0.0.1:9"
OTHER = "http://127.0.0.1:8"
CONFIG_STALE = timedelta(seconds=30)


def _backlog(db: Session, tenant: Tenant, base: str, count: int) -> None:
    for i in range(count):
        finish(db, tenant=tenant, webhook_url=f"{base}/hook/{i}", config=CONFIG)


def test_the_dispatcher_hints_at_most_the_receivers_share(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    _backlog(db, tenant[0], SLOW, 10)
    _backlog(db, tenant[0], OTHER, 3)
    db.execute(update(WebhookDelivery).values(enqueued_at=None))
    db.commit()

    hinted = delivery_service.dispatch_due(db, stale_after=CONFIG_STALE, per_receiver=2)
    db.commit()

    urls = {d.id: d.url for d in deliveries(db)}
    assert sorted(urls[i].rsplit("/hook", 1)[0] for i in hinted) == [OTHER, OTHER, SLOW, SLOW]
    # Those hints are out: nothing more for either receiver until they are attempted.
    assert delivery_service.dispatch_due(db, stale_after=CONFIG_STALE, per_receiver=2) == []


def test_an_attempt_waits_while_its_receiver_has_every_slot_busy(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    _backlog(db, tenant[0], SLOW, 1)
    _backlog(db, tenant[0], OTHER, 1)
    slow, other = sorted(deliveries(db), key=lambda d: d.url != f"{SLOW}/hook/0")
    with get_engine().connect() as busy:  # every slot of the slow receiver is in flight
        for slot in range(CONFIG.receiver_concurrency):
            busy.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:r), :s)"), {"r": SLOW, "s": slot}
            )
        before = utcnow()
        assert attempt(db, slow, config=CONFIG) is None
        assert attempts(db, slow.id) == []  # not an attempt: it waits its turn
        (row,) = [d for d in deliveries(db) if d.id == slow.id]
        assert row.next_attempt_at is not None
        assert row.next_attempt_at >= before + BUSY_RECEIVER_DELAY
        assert row.attempt_count == 0
        attempt(db, other, config=CONFIG)  # another receiver is not held up
        assert len(attempts(db, other.id)) == 1
        busy.rollback()
    db.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
    db.commit()
    attempt(db, slow, config=CONFIG)
    assert len(attempts(db, slow.id)) == 1


def test_an_ended_attempt_hints_its_receivers_next_deliveries_at_once(
    db: Session, tenant: tuple[Tenant, str]
) -> None:
    _backlog(db, tenant[0], SLOW, 3 + CONFIG.receiver_concurrency)
    _backlog(db, tenant[0], OTHER, 2)
    db.execute(update(WebhookDelivery).values(enqueued_at=None))
    db.commit()
    first = next(d for d in deliveries(db) if d.url == f"{SLOW}/hook/0")

    attempt(db, first, config=CONFIG)  # nothing listens on port 9: a failed attempt

    hinted = [d for d in deliveries(db) if d.enqueued_at is not None]
    # Its slot is free again: the receiver's next deliveries go out without waiting for the
    # dispatcher, as many as the receiver may have; other receivers' are the dispatcher's.
    assert len(hinted) == CONFIG.receiver_concurrency
    assert {d.url.rsplit("/hook", 1)[0] for d in hinted} == {SLOW}
    assert first.id not in {d.id for d in hinted}
    assert len(attempts(db, first.id)) == 1
