"""Webhooks (admin): subscriptions to changes, and the deliveries sent to them."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.auth.deps import AdminKey
from app.db import utcnow
from app.deps import ReadSession, WriteSession
from app.errors import responses
from app.pagination import Cursor, Limit, Page, decode_id_cursor, encode_cursor
from app.params import RowId
from app.webhooks import service
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.schemas import (
    DeliveryOut,
    DeliveryStatus,
    EventType,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def webhook_out(webhook: Webhook) -> WebhookOut:
    return WebhookOut(
        id=webhook.id,
        url=webhook.url,
        events=[EventType(e) for e in service.events_of(webhook)],
        unit=webhook.unit,
        description=webhook.description,
        created_by=webhook.created_by,
        created_at=webhook.created_at,
    )


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        webhook_id=delivery.webhook_id,
        type=delivery.type,
        sequence=delivery.sequence,
        status=DeliveryStatus(delivery.status),
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        data=delivery.data,
    )


@router.post("", status_code=201, responses=responses(400, 401, 403, 413, 422))
def create_webhook(body: WebhookIn, principal: AdminKey, session: WriteSession, request: Request) -> WebhookCreated:
    """Subscribe a URL to changes; the answer carries the signing secret, shown this once."""
    webhook = service.create(
        session,
        request.app.state.settings,
        url=body.url,
        events=[e.value for e in body.events],
        unit=body.unit,
        description=body.description,
        actor=principal.name,
        now=utcnow(),
    )
    return WebhookCreated(**webhook_out(webhook).model_dump(), secret=webhook.secret)


@router.get("", responses=responses(401, 403, 422))
def list_webhooks(
    principal: AdminKey, session: ReadSession, limit: Limit = 50, cursor: Cursor = None
) -> Page[WebhookOut]:
    """Webhooks, newest first (secrets are never shown again)."""
    rows = service.list_webhooks(session, limit=limit + 1, after=decode_id_cursor("webhooks", cursor))
    page = rows[:limit]
    next_cursor = encode_cursor("webhooks", [page[-1].id]) if len(rows) > limit else None
    return Page[WebhookOut](items=[webhook_out(w) for w in page], next_cursor=next_cursor)


@router.get("/{webhook_id}", responses=responses(401, 403, 404, 422))
def get_webhook(webhook_id: RowId, principal: AdminKey, session: ReadSession) -> WebhookOut:
    """One webhook."""
    return webhook_out(service.get(session, webhook_id))


@router.delete("/{webhook_id}", status_code=204, responses=responses(401, 403, 404, 422))
def delete_webhook(webhook_id: RowId, principal: AdminKey, session: WriteSession) -> Response:
    """Stop a webhook: nothing more is sent to it, pending deliveries included."""
    service.delete(session, service.get(session, webhook_id, lock=True), actor=principal.name, now=utcnow())
    return Response(status_code=204)


@router.post("/{webhook_id}/test", status_code=202, responses=responses(401, 403, 404, 422))
def test_webhook(webhook_id: RowId, principal: AdminKey, session: WriteSession) -> DeliveryOut:
    """Queue a `test` delivery to the webhook (sent within seconds, signed like any other)."""
    delivery = service.ping(session, service.get(session, webhook_id), actor=principal.name, now=utcnow())
    return delivery_out(delivery)


@router.get("/{webhook_id}/deliveries", responses=responses(401, 403, 404, 422))
def list_deliveries(
    webhook_id: RowId,
    principal: AdminKey,
    session: ReadSession,
    status: DeliveryStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryOut]:
    """The webhook's deliveries, newest first, with their attempts, last status code and error."""
    webhook = service.get(session, webhook_id)
    rows = service.list_deliveries(
        session,
        webhook,
        status=status.value if status else None,
        limit=limit + 1,
        after=decode_id_cursor("deliveries", cursor),
    )
    page = rows[:limit]
    next_cursor = encode_cursor("deliveries", [page[-1].id]) if len(rows) > limit else None
    return Page[DeliveryOut](items=[delivery_out(d) for d in page], next_cursor=next_cursor)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver", status_code=202, responses=responses(401, 403, 404, 409, 422)
)
def redeliver(webhook_id: RowId, delivery_id: RowId, principal: AdminKey, session: WriteSession) -> DeliveryOut:
    """Send a delivered or failed delivery again (same id and sequence; 409 while it is pending)."""
    webhook = service.get(session, webhook_id)
    return delivery_out(service.redeliver(session, webhook, delivery_id, now=utcnow()))
