"""Webhook delivery gauges, read from Postgres at scrape time."""

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
            "Webhook deliveries by state (dead = dead-lettered)",
            labels=["state"],
        )
        disabled = GaugeMetricFamily(
            "thrifty_webhook_endpoints_disabled", "Webhook endpoints disabled (410 Gone)"
        )
        with session_scope() as session:
            query_states = select(WebhookDelivery.state, func.count()).group_by(
                WebhookDelivery.state
            )
            counts = {state: count for state, count in session.execute(query_states)}
            for state in DeliveryState:
                deliveries.add_metric([state.value], counts.get(state, 0))
            query = select(func.count()).where(WebhookEndpoint.disabled_at.is_not(None))
            disabled.add_metric([], session.scalar(query) or 0)
        yield deliveries
        yield disabled
