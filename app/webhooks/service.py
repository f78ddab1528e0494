"""Subscriptions (admin): create, read, delete, ping; their deliveries: list, redeliver."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from ipaddress import ip_address
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.config import Settings
from app.db import after_commit
from app.errors import Conflict, InvalidInput, NotFound
from app.webhooks import outbox
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.schemas import TEST

SECRET_BYTES = 24


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def host_allowed(url: str, settings: Settings) -> bool:
    """Whether `SUPERVISION_WEBHOOK_HOSTS` lets a webhook point at this URL (names match exactly; an IP
    literal matches a listed CIDR; names are not resolved)."""
    allowed = settings.webhook_allowed
    if allowed is None:
        return True
    names, networks = allowed
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    try:
        address = ip_address(host)
    except ValueError:
        return host in names
    return host in names or any(address in network for network in networks)


def create(
    session: Session,
    settings: Settings,
    *,
    url: str,
    events: list[str],
    unit: str | None,
    description: str | None,
    actor: str,
    now: datetime,
) -> Webhook:
    if not host_allowed(url, settings):
        raise InvalidInput([(("body", "url"), "the host is not one SUPERVISION_WEBHOOK_HOSTS allows")])
    webhook = Webhook(
        url=url,
        events="," + ",".join(events) + ",",
        unit=unit,
        description=description,
        secret=new_secret(),
        created_by=actor,
        created_at=now,
        next_sequence=1,
    )
    session.add(webhook)
    session.flush()
    _audit(session, webhook, "webhook.created", actor, now)
    after_commit(session, outbox.forget_webhooks)
    return webhook


def _audit(session: Session, webhook: Webhook, action: str, actor: str, now: datetime) -> None:
    # Never the secret.
    audit.record(
        session,
        actor=actor,
        action=action,
        object_type="webhook",
        object_id=str(webhook.id),
        data={"url": webhook.url, "events": events_of(webhook), "unit": webhook.unit},
        at=now,
    )


def events_of(webhook: Webhook) -> list[str]:
    return webhook.events.strip(",").split(",")


def get(session: Session, webhook_id: int, *, lock: bool = False) -> Webhook:
    query = select(Webhook).where(Webhook.id == webhook_id, Webhook.deleted_at.is_(None))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    found = session.scalars(query).first()
    if found is None:
        raise NotFound(f"no webhook with id {webhook_id}")
    return found


def list_webhooks(session: Session, *, limit: int, after: int | None) -> list[Webhook]:
    query = select(Webhook).where(Webhook.deleted_at.is_(None))
    if after is not None:
        query = query.where(Webhook.id < after)
    return list(session.scalars(query.order_by(Webhook.id.desc()).limit(limit)))


def delete(session: Session, webhook: Webhook, *, actor: str, now: datetime) -> None:
    """Stop a webhook: it gets nothing more (its pending deliveries become `failed`); its record stays."""
    webhook.deleted_at = now
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error="the webhook was deleted")
    )
    session.flush()
    _audit(session, webhook, "webhook.deleted", actor, now)
    after_commit(session, outbox.forget_webhooks)


def ping(session: Session, webhook: Webhook, *, actor: str, now: datetime) -> WebhookDelivery:
    """Queue a `test` delivery (sent like any other, in sequence order)."""
    delivery = WebhookDelivery(
        webhook_id=webhook.id,
        type=TEST,
        data={"webhook_id": webhook.id, "requested_by": actor, "message": "test delivery"},
        created_at=now,
        status="pending",
        attempts=0,
        next_attempt_at=now,
    )
    session.add(delivery)
    session.flush()
    after_commit(session, outbox.wake)
    return delivery


def list_deliveries(
    session: Session, webhook: Webhook, *, status: str | None, limit: int, after: int | None
) -> list[WebhookDelivery]:
    """Newest first (by id)."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if after is not None:
        query = query.where(WebhookDelivery.id < after)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def redeliver(session: Session, webhook: Webhook, delivery_id: int, *, now: datetime) -> WebhookDelivery:
    """Send a delivered or failed delivery again: same id and sequence, attempts start over (409 if pending)."""
    delivery = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if delivery is None:
        raise NotFound(f"no delivery with id {delivery_id} for webhook {webhook.id}")
    if delivery.status == "pending":
        raise Conflict("the delivery is pending already")
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.first_attempt_at = None
    delivery.delivered_at = None
    delivery.next_attempt_at = now
    session.flush()
    after_commit(session, outbox.wake)
    return delivery
