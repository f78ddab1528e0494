from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Breaker(Base):
    """A rule's trip state on one subject (阈值熔断); one row per (rule, subject), reused across trips."""

    __tablename__ = "breakers"
    __table_args__ = (
        UniqueConstraint("kind", "rule_id", "subject_type", "subject_id"),
        Index("ix_breakers_subject_type_subject_id", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "rule": tripped by a rule's trip_at; "suspension": 停业整改 ordered by an accountability outcome,
    # open until suspended_until unless an admin lifts it early.
    kind: Mapped[str] = mapped_column(String(16), default="rule")
    rule_id: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    domains: Mapped[str] = mapped_column(String(200))  # ",a,b," as alerts.domains
    # open or half_open as stored; a half_open breaker past probation_until reads as closed.
    state: Mapped[str] = mapped_column(String(16))
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    probation_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)


class BreakerChange(Base):
    """Every trip and reset of a breaker: who, when, why, and which alert."""

    __tablename__ = "breaker_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    breaker_id: Mapped[int] = mapped_column(ForeignKey("breakers.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # trip | reset
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(2000))
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
