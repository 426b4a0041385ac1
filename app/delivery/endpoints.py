"""The webhooks API: endpoints, secrets and deliveries (the session dependency commits)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.delivery import deliveries, subscriptions
from app.delivery.schemas import (
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    EndpointCreated,
    EndpointIn,
    EndpointOut,
    SecretOut,
)
from app.kit.deps import SessionDep
from app.kit.errors import API_ERROR_CODES, error_responses
from app.kit.json_input import StrictJSONRoute
from app.models import DeliveryState
from app.tenants.deps import WebhooksWrite

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], route_class=StrictJSONRoute)

ERRORS = error_responses(*API_ERROR_CODES)


@router.post(
    "/endpoints",
    status_code=201,
    response_model=EndpointCreated,
    responses=ERRORS,
    summary="Register a webhook endpoint",
)
def create_endpoint(
    data: EndpointIn, tenant: WebhooksWrite, session: SessionDep
) -> EndpointCreated:
    """Subscribe a URL to events. The answer holds the signing secret, shown only this once.

    URLs resolving to loopback, private, link-local or cloud-metadata addresses are refused
    (422) unless the server's configuration allows them.
    """
    return subscriptions.create_endpoint(session, tenant=tenant, data=data)


@router.get("/endpoints", response_model=list[EndpointOut], responses=ERRORS)
def list_endpoints(tenant: WebhooksWrite, session: SessionDep) -> list[EndpointOut]:
    """The tenant's endpoints (without secrets)."""
    return subscriptions.list_endpoints(session, tenant=tenant)


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut, responses=ERRORS)
def get_endpoint(endpoint_id: uuid.UUID, tenant: WebhooksWrite, session: SessionDep) -> EndpointOut:
    return subscriptions.get_endpoint(session, tenant=tenant, endpoint_id=endpoint_id)


@router.delete("/endpoints/{endpoint_id}", status_code=204, responses=ERRORS)
def delete_endpoint(endpoint_id: uuid.UUID, tenant: WebhooksWrite, session: SessionDep) -> Response:
    """Remove an endpoint, its pending deliveries and its delivery history."""
    subscriptions.delete_endpoint(session, tenant=tenant, endpoint_id=endpoint_id)
    return Response(status_code=204)


@router.post("/endpoints/{endpoint_id}/enable", response_model=EndpointOut, responses=ERRORS)
def enable_endpoint(
    endpoint_id: uuid.UUID, tenant: WebhooksWrite, session: SessionDep
) -> EndpointOut:
    """Re-enable an endpoint that was disabled (a 410 Gone answer disables it)."""
    return subscriptions.enable_endpoint(session, tenant=tenant, endpoint_id=endpoint_id)


@router.post("/endpoints/{endpoint_id}/rotate-secret", response_model=SecretOut, responses=ERRORS)
def rotate_endpoint_secret(
    endpoint_id: uuid.UUID, tenant: WebhooksWrite, session: SessionDep
) -> SecretOut:
    """A new secret; the previous one also signs (a second `v1,` signature) during the grace
    period (`THRIFTY_WEBHOOK_SECRET_GRACE_SECONDS`)."""
    return subscriptions.rotate_endpoint_secret(session, tenant=tenant, endpoint_id=endpoint_id)


@router.get("/secret", response_model=SecretOut, responses=ERRORS)
def get_secret(tenant: WebhooksWrite, session: SessionDep) -> SecretOut:
    """The secret that signs deliveries to jobs' own `webhook_url` (created on first use)."""
    return subscriptions.tenant_secret(session, tenant=tenant)


@router.post("/secret/rotate", response_model=SecretOut, responses=ERRORS)
def rotate_secret(tenant: WebhooksWrite, session: SessionDep) -> SecretOut:
    """Rotate the per-job `webhook_url` secret, with the same grace period as endpoints."""
    return subscriptions.rotate_tenant_secret(session, tenant=tenant)


@router.get("/deliveries", response_model=DeliveryPage, responses=ERRORS)
def list_deliveries(
    tenant: WebhooksWrite,
    session: SessionDep,
    status: Annotated[DeliveryState | None, Query(description="pending, succeeded or dead")] = None,
    endpoint_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    before: Annotated[str | None, Query(description="Cursor from `next_before`.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryPage:
    """Deliveries, newest first; `status=dead` lists the dead-lettered ones."""
    return deliveries.list_deliveries(
        session,
        tenant=tenant,
        state=status,
        endpoint_id=endpoint_id,
        job_id=job_id,
        before=before,
        limit=limit,
    )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryDetail, responses=ERRORS)
def get_delivery(
    delivery_id: uuid.UUID, tenant: WebhooksWrite, session: SessionDep
) -> DeliveryDetail:
    """One delivery with its body and every attempt (status code, error, duration)."""
    return deliveries.get_delivery(session, tenant=tenant, delivery_id=delivery_id)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    responses=ERRORS,
)
def redeliver(delivery_id: uuid.UUID, tenant: WebhooksWrite, session: SessionDep) -> DeliveryOut:
    """Send a delivery again now (same `webhook-id` and body), with a fresh retry budget."""
    return deliveries.redeliver(session, tenant=tenant, delivery_id=delivery_id)
