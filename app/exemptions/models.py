from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Exemption(Base):
    """A filing (报备) of legitimate bulk business: while approved, alerts it covers trip no breaker."""

    __tablename__ = "exemptions"
    __table_args__ = (Index("ix_exemptions_subject_id_status", "subject_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # One rule, or (null) every rule watching any of `domains`.
    rule_id: Mapped[str | None] = mapped_column(String(64))
    # ",a,b," as alerts keep theirs, so one LIKE finds a domain on every database.
    domains: Mapped[str] = mapped_column(String(200))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(2000))
    reference: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # requested, approved, rejected, revoked
    requested_by: Mapped[str] = mapped_column(String(64))
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(String(2000))
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(String(2000))
    version: Mapped[int] = mapped_column(Integer, default=1)
