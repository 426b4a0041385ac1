"""Webhook delivery gauges, read from Postgres at scrape time: pending and dead-lettered
deliveries (an index range of ``ix_webhook_deliveries_due`` each; succeeded ones, the
bulk of the table, are not counted) and disabled endpoints."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.kit.db import session_scope
from app.models import DeliveryState, WebhookDelivery, WebhookEndpoint


class DeliveryCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        deliveries = GaugeMetricFamily(
            "thrifty_webhook_deliveries",
            "Webhook deliveries pending or dead-lettered (dead)",
            labels=["state"],
        )
        disabled = GaugeMetricFamily(
            "thrifty_webhook_endpoints_disabled", "Webhook endpoints disabled (410 Gone)"
        )
        with session_scope() as session:
            for state in (DeliveryState.pending, DeliveryState.dead):
                count = select(func.count()).where(WebhookDelivery.state == state)
                deliveries.add_metric([state.value], session.scalar(count) or 0)
            query = select(func.count()).where(WebhookEndpoint.disabled_at.is_not(None))
            disabled.add_metric([], session.scalar(query) or 0)
        yield deliveries
        yield disabled
