from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONDocument, UTCDateTime

# 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
EntryId = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    """One change of state (审计记录). Written pending (seq, prev_hash and hash NULL) in the transaction of
    the change, then sealed into the hash chain; never changed after that, never deleted.

    On PostgreSQL a trigger (migration 0004) enforces this; SQLite has no such guard, and verify finds
    what was changed there.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        UniqueConstraint("seq"),
        Index("ix_audit_log_object_type_object_id_seq", "object_type", "object_id", "seq"),
        Index("ix_audit_log_action_seq", "action", "seq"),
        # Ids only ever grow, even after a (forbidden) delete of the newest row.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(EntryId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # alert.raised, breaker.reset, checkpoint, …
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    # The org unit the change belongs to, if any: a unit-scoped inspector sees only entries of their units.
    unit: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    # The chain: NULL while pending, set once by seal().
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
