from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class ApiKey(Base):
    """An API key. Only the SHA-256 of the secret is stored; the secret is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The key's name is the source of the events it posts; several keys may share a name (rotation).
    name: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[str | None] = mapped_column(ForeignKey("units.id"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the secret, so an operator can tell keys apart in `keys list`.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
