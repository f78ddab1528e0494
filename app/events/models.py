from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDocument, UTCDateTime

# 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Event(Base):
    """One business action (业务事件) reported by a business system. Never updated once stored."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("source", "source_event_id"),
        Index("ix_events_occurred_at_id", "occurred_at", "id"),
        Index("ix_events_operator_id_occurred_at", "operator_id", "occurred_at"),
        Index("ix_events_business_unit_id_occurred_at", "business_unit_id", "occurred_at"),
        Index("ix_events_agent_id_occurred_at", "agent_id", "occurred_at"),
        Index("ix_events_domain_occurred_at", "domain", "occurred_at"),
        Index("ix_events_operator_unit_occurred_at", "operator_unit", "occurred_at"),
        Index("ix_events_responsible_officer_occurred_at", "responsible_officer", "occurred_at"),
        # Ids only ever grow, even after a (forbidden) delete of the newest row: evidence is in id order.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    source_event_id: Mapped[str] = mapped_column(String(128))
    domain: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    operator_id: Mapped[str] = mapped_column(String(64))
    operator_kind: Mapped[str] = mapped_column(String(16))
    # A registered unit (units.id), checked by a trigger rather than a foreign key (see migration 0008).
    operator_unit: Mapped[str] = mapped_column(String(64))
    responsible_officer: Mapped[str | None] = mapped_column(String(64))
    business_unit_id: Mapped[str | None] = mapped_column(String(64))
    business_unit_kind: Mapped[str | None] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(64))
    object_ref: Mapped[str | None] = mapped_column(String(128))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    # SHA-256 of the event's canonical content: decides duplicate vs conflict, and is its evidence hash.
    content_hash: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
