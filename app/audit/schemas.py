"""Audit trail bodies (the contract's Audit section)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEntryOut(BaseModel):
    id: int
    seq: int = Field(description="place in the hash chain: 1, 2, 3, … without gaps")
    at: datetime
    actor: str = Field(description="who made the change: a key's name, `cli:<user>`, or `system`")
    action: str = Field(description="alert.raised, alert.moved, breaker.reset, key.created, checkpoint, …")
    object_type: str
    object_id: str
    unit: str | None = Field(description="the org unit the change belongs to, if any")
    data: dict[str, Any]
    prev_hash: str = Field(description="the hash of the entry before (64 zeros for the first)")
    hash: str = Field(description="SHA-256 over the RFC 8785 encoding of the entry and prev_hash")


class VerdictOut(BaseModel):
    ok: bool
    checked: int = Field(description="entries of the chain checked")
    first_mismatch: int | None = Field(
        description="id of the first entry, in chain order, that does not hold (for a changed or deleted "
        "event: the checkpoint that covers it)"
    )
    reason: str | None = Field(
        default=None, description="what does not hold at first_mismatch (not told to a unit-scoped key)"
    )
    changed_events: list[int] = Field(
        default_factory=list,
        description="ids of checkpointed events whose columns no longer give their content_hash (at most 100; "
        "not told to a unit-scoped key)",
    )
    head_seq: int | None = Field(default=None, description="seq of the last sealed entry")
    head_hash: str | None = Field(
        default=None, description="its hash: kept outside the database, it also reveals a removed tail"
    )
