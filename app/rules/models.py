from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class RuleGeneration(Base):
    """One successful `POST /v1/rules/reload`: every worker moves to the rules with this digest."""

    __tablename__ = "rule_generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # SHA-256 of the loaded rules' canonical JSON: a worker reloading the files checks it got the same rules.
    digest: Mapped[str] = mapped_column(String(64))
    rules: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
