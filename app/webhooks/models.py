from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDocument, UTCDateTime, utcnow


class Webhook(Base):
    """A subscription: changes of the listed types (in `unit`'s subtree) are POSTed to `url`, signed."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(500))  # ",alert.raised,breaker.opened,"
    unit: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(500))
    # whsec_<base64>: kept as is, since signing needs the key itself (never logged, shown once).
    secret: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Deleted webhooks stay (their deliveries name them) but get and send nothing more.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The sequence the next delivery gets (assigned when a worker claims the webhook, in commit order).
    next_sequence: Mapped[int] = mapped_column(Integer, default=1)
    # A worker delivering to this webhook holds it until then (one worker per webhook: ordered delivery).
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_holder: Mapped[str | None] = mapped_column(String(100))


class WebhookDelivery(Base):
    """One message for one webhook (the outbox): written in the transaction of the change it tells of."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_webhook_id_status_sequence", "webhook_id", "status", "sequence"),
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"))
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # when the change committed
    sequence: Mapped[int | None] = mapped_column(Integer)  # None until a worker first claims it
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
