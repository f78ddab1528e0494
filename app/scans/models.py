from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Scan(Base):
    """One run of every rule over stored events, with its figures."""

    __tablename__ = "scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))  # cli | api | periodic
    actor: Mapped[str] = mapped_column(String(64))
    range_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    range_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rules: Mapped[int] = mapped_column(Integer, default=0)
    windows: Mapped[int] = mapped_column(Integer, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)
    alerts_raised: Mapped[int] = mapped_column(Integer, default=0)
    alerts_updated: Mapped[int] = mapped_column(Integer, default=0)
    alerts_cleared: Mapped[int] = mapped_column(Integer, default=0)
    breakers_tripped: Mapped[int] = mapped_column(Integer, default=0)
    overdue_flagged: Mapped[int] = mapped_column(Integer, default=0)  # supervisions seen past due_at
    windows_repaired: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )  # aggregate rows that had drifted
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(2000))


class Lease(Base):
    """A named periodic job: whoever moves ``due_at`` forward first runs it (one run a period, any workers)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    holder: Mapped[str | None] = mapped_column(String(128))
