from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.fields import Ident, Text


class EventType(StrEnum):
    ALERT_RAISED = "alert.raised"
    ALERT_UPDATED = "alert.updated"
    ALERT_CLEARED = "alert.cleared"
    ALERT_TRANSITIONED = "alert.transitioned"
    ALERT_OVERDUE = "alert.overdue"
    BREAKER_OPENED = "breaker.opened"
    BREAKER_RESET = "breaker.reset"
    BREAKER_CLOSED = "breaker.closed"  # probation passed (or a suspension's days are over)
    EXEMPTION_REQUESTED = "exemption.requested"
    EXEMPTION_DECIDED = "exemption.decided"
    EXEMPTION_REVOKED = "exemption.revoked"


TEST = "test"  # the type of a ping (POST /v1/webhooks/{id}/test); not subscribable


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password")
    if parts.fragment:
        raise ValueError("must not carry a #fragment")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return value


Url = Annotated[Text, Field(min_length=1, max_length=2000), AfterValidator(_http_url)]


def _unique(values: list[EventType]) -> list[EventType]:
    if len(set(values)) != len(values):
        raise ValueError("lists an event type twice")
    return values


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Url = Field(description="where deliveries are POSTed (http or https; redirects are not followed)")
    events: Annotated[list[EventType], Field(min_length=1, max_length=len(EventType)), AfterValidator(_unique)]
    unit: Ident | None = Field(default=None, description="only changes in this org unit's subtree")
    description: Annotated[Text, Field(min_length=1, max_length=500)] | None = None


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[EventType]
    unit: str | None
    description: str | None
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_<base64 key>: the signing secret, shown only in this answer")


class DeliveryOut(BaseModel):
    id: int = Field(description="the message id: the `webhook-id` header and the payload's `id`")
    webhook_id: int
    type: str
    sequence: int | None = Field(description="increases per webhook; set when a worker first takes the delivery")
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="when the next attempt is due (pending only)")
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    data: dict[str, Any]
