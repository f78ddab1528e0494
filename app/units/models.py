from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Unit(Base):
    """An org unit (单位): 支队 / 大队 / 中队 / 窗口 / 考管中心, in a tree."""

    __tablename__ = "units"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("units.id"), index=True)
    label_zh: Mapped[str | None] = mapped_column(String(200))
    label_en: Mapped[str | None] = mapped_column(String(200))
    # "event" when an event named it before anyone registered it, "admin" once set through the API.
    registered_by: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
