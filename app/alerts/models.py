from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDocument, UTCDateTime, utcnow


class Alert(Base):
    """A rule firing for one subject in one window (业务预警): one row per (rule, subject, window start)."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("rule_id", "subject_id", "window_start"),
        Index("ix_alerts_window_start_id", "window_start", "id"),
        Index("ix_alerts_subject_id", "subject_id"),
        Index("ix_alerts_unit", "unit"),
        Index("ix_alerts_exemption_id", "exemption_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    # The rule's domains when last evaluated, as ",a,b," so one LIKE finds a domain on every database.
    domains: Mapped[str] = mapped_column(String(200))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    value: Mapped[float] = mapped_column(Float)
    hits: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(64))
    responsible_officer: Mapped[str | None] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(16), default="warning")
    tripped: Mapped[bool] = mapped_column(Boolean)
    cleared: Mapped[bool] = mapped_column(Boolean, default=False)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_event_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # {event_ids: first EVIDENCE_CAP counted ids in (occurred_at, id) order, count, value, truncated}
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    # The workflow (处置): when the alert entered its stage; for supervision, who handles it by when.
    stage_entered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    assignee_unit: Mapped[str | None] = mapped_column(String(64))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overdue_flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a scan saw it pass due_at
    # police / auxiliary / staff when the subject is a person (the operator of the first counted event).
    subject_kind: Mapped[str | None] = mapped_column(String(16))
    # An approved exemption (报备) covers the alert: recorded, but it trips no breaker and counts apart.
    exempted: Mapped[bool] = mapped_column(Boolean, default=False)
    exemption_id: Mapped[int | None] = mapped_column(ForeignKey("exemptions.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertTransition(Base):
    """One move of an alert through the workflow: who, when, why, and the fields the target stage needs."""

    __tablename__ = "alert_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    from_stage: Mapped[str] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(2000))
    details: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
