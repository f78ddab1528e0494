from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class EndedSession(Base):
    """A console session ended by signing out before it expired: its cookie is refused from then on, even a
    copy of it. Kept only as long as such a cookie could still be valid."""

    __tablename__ = "console_sessions_ended"

    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
