"""Writing, sealing, listing and verifying the audit trail.

A change of state and its entry land in one transaction: `record` inserts the entry *pending* (no place
in the chain yet) with the change, taking no lock, so ingest and every other writer never wait on the
chain. `seal` later gives the committed pending entries, in id order, the next places in the chain and
their hashes, one sealer at a time (a PostgreSQL advisory lock; on SQLite writers are serialised
anyway). Listing, verifying and checkpoints seal first, so a reader always sees a current chain;
`seal_pending` may also be run on a schedule to keep the pending tail short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import RowMapping, Select, Table, bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from app.audit import evidence
from app.audit.chain import GENESIS, entry_hash
from app.audit.models import AuditEntry
from app.db import Database, utcnow
from app.events.domains import json_value_errors

AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]

# The key of the PostgreSQL advisory lock that serialises sealing.
CHAIN_LOCK = 0x5E_A0D1
SEAL_CHUNK = 1000  # entries per UPDATE round trip
CHECKPOINT_WAIT = 30.0  # seconds a checkpoint waits for transactions writing events


class AuditAction(StrEnum):
    """The actions the service records (an entry's `action` is free text; these are the known ones)."""

    ALERT_RAISED = "alert.raised"
    ALERT_UPDATED = "alert.updated"
    ALERT_CLEARED = "alert.cleared"
    ALERT_MOVED = "alert.moved"
    BREAKER_TRIPPED = "breaker.tripped"
    BREAKER_RESET = "breaker.reset"
    RULES_RELOADED = "rules.reloaded"
    KEY_CREATED = "key.created"
    KEY_REVOKED = "key.revoked"
    UNIT_CHANGED = "unit.changed"
    CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class Change:
    """One entry to record (see `record`)."""

    actor: str
    action: str
    object_type: str
    object_id: str
    data: Mapping[str, Any] = field(default_factory=dict)
    unit: str | None = None
    at: datetime | None = None


_LIMITS = (("actor", 64), ("action", 32), ("object_type", 32), ("object_id", 64), ("unit", 64))


def _row(change: Change) -> dict[str, Any]:
    for name, limit in _LIMITS:
        value = getattr(change, name)
        if value is not None and not 0 < len(value) <= limit:
            raise ValueError(f"audit entry {name} must be 1 to {limit} characters: {value!r}")
    data = to_jsonable_python(dict(change.data))
    problems = list(json_value_errors(data, ("data",)))
    if problems:
        raise ValueError(f"audit entry data cannot be stored and hashed: {problems}")
    return {
        "at": change.at or utcnow(),
        "actor": change.actor,
        "action": str(change.action),
        "object_type": change.object_type,
        "object_id": change.object_id,
        "unit": change.unit,
        "data": data,
    }


_INSERT = insert(AUDIT)
_INSERT_ONE = insert(AUDIT).returning(AUDIT.c.id)


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    data: Mapping[str, Any] | None = None,
    unit: str | None = None,
    at: datetime | None = None,
) -> int:
    """Append a pending entry for a change made in this transaction; its id.

    Takes no lock: the entry commits (or rolls back) with the change and is chained by a later `seal`.
    `data` is JSON (datetimes and enums are turned into text); `unit` is the org unit the change
    belongs to, which decides the unit-scoped inspectors who see it.
    """
    change = Change(actor, action, object_type, object_id, data or {}, unit, at)
    entry_id: int = session.execute(_INSERT_ONE, _row(change)).scalar_one()
    return entry_id


def record_all(session: Session, changes: Iterable[Change]) -> None:
    """`record` for many changes at once, in one statement."""
    rows = [_row(change) for change in changes]
    if rows:
        session.execute(_INSERT, rows)


_HEAD = select(AUDIT.c.seq, AUDIT.c.hash).where(AUDIT.c.seq.is_not(None)).order_by(AUDIT.c.seq.desc()).limit(1)
_LAST_PENDING = select(func.max(AUDIT.c.id)).where(AUDIT.c.seq.is_(None))
_PENDING = (
    select(
        AUDIT.c.id,
        AUDIT.c.at,
        AUDIT.c.actor,
        AUDIT.c.action,
        AUDIT.c.object_type,
        AUDIT.c.object_id,
        AUDIT.c.unit,
        AUDIT.c.data,
    )
    .where(AUDIT.c.seq.is_(None), AUDIT.c.id > bindparam("after"), AUDIT.c.id <= bindparam("upto"))
    .order_by(AUDIT.c.id)
    .limit(SEAL_CHUNK)
)
_SEAL = (
    update(AUDIT)
    .where(AUDIT.c.id == bindparam("b_id"), AUDIT.c.seq.is_(None))
    .values(seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"))
)
# PostgreSQL: a chunk in one statement, its columns as arrays (a row at a time took most of the sealing).
_SEAL_UNNEST = text(
    "UPDATE audit_log SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS bigint[]), CAST(:prevs AS text[]), CAST(:hashes AS text[])) "
    "AS v(id, seq, prev_hash, hash) WHERE audit_log.id = v.id AND audit_log.seq IS NULL"
)


def _lock_chain(session: Session) -> None:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(CHAIN_LOCK)))
    elif not connection.get_execution_options().get("supervision_write"):
        # A deferred SQLite transaction could read the head, then find another writer got there first.
        raise RuntimeError("seal the audit chain in a write session: Database.session(write=True)")


def seal(session: Session) -> int:
    """Chain the pending entries this transaction sees, in id order; how many were sealed.

    Holds the chain lock until the transaction ends: call it in a short transaction of its own (or
    last in one), and let the caller commit.
    """
    _lock_chain(session)
    # Read after the lock: the previous sealer has committed, and this statement sees its work.
    upto = session.scalar(_LAST_PENDING)
    if upto is None:
        return 0
    head = session.execute(_HEAD).first()
    seq, prev = (head.seq, head.hash) if head is not None else (0, GENESIS)
    sealed = after = 0
    while True:
        rows = session.execute(_PENDING, {"after": after, "upto": upto}).all()
        updates = []
        for row in rows:
            seq += 1
            digest = entry_hash(
                entry_id=row.id,
                seq=seq,
                at=row.at,
                actor=row.actor,
                action=row.action,
                object_type=row.object_type,
                object_id=row.object_id,
                unit=row.unit,
                data=row.data,
                prev_hash=prev,
            )
            updates.append({"b_id": row.id, "b_seq": seq, "b_prev": prev, "b_hash": digest})
            prev = digest
        if updates:
            _write_seals(session, updates)
            sealed += len(updates)
            after = updates[-1]["b_id"]
        if len(rows) < SEAL_CHUNK:
            return sealed


def _write_seals(session: Session, updates: list[dict[str, Any]]) -> None:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        columns = {"ids": "b_id", "seqs": "b_seq", "prevs": "b_prev", "hashes": "b_hash"}
        connection.execute(_SEAL_UNNEST, {name: [u[key] for u in updates] for name, key in columns.items()})
    else:
        connection.execute(_SEAL, updates)


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    data: Mapping[str, Any] | None = None,
    unit: str | None = None,
) -> AuditEntry:
    """`record` then `seal`: the entry, already in the chain (with every entry pending before it)."""
    entry_id = record(
        session, actor=actor, action=action, object_type=object_type, object_id=object_id, data=data, unit=unit
    )
    seal(session)
    return session.execute(
        select(AuditEntry).where(AuditEntry.id == entry_id), execution_options={"populate_existing": True}
    ).scalar_one()


def seal_pending(db: Database) -> int:
    """Seal what is pending, in a short write transaction of its own (none when nothing is pending)."""
    with db.session() as session:
        if session.scalar(_LAST_PENDING) is None:
            return 0
    with db.session(write=True) as session:
        return seal(session)


def checkpoint(session: Session, *, actor: str, wait: float = CHECKPOINT_WAIT) -> AuditEntry:
    """Append a checkpoint of the events stored so far: their count, the last id and a hash over their
    content hashes in id order, so verify finds an event changed or deleted afterwards.

    On PostgreSQL it first waits for the transactions writing events (see evidence.settled_horizon):
    call it before the transaction takes any other lock. `take_checkpoint` does it all in transactions
    of its own and holds SQLite's write lock only for the append.
    """
    found = evidence.figures(session, up_to=evidence.settled_horizon(session, timeout=wait))
    return _append_checkpoint(session, actor=actor, found=found)


def take_checkpoint(db: Database, *, actor: str, wait: float = CHECKPOINT_WAIT) -> AuditEntry:
    """`checkpoint`, counting in a read transaction and appending in a short write transaction."""
    with db.session() as session:
        found = evidence.figures(session, up_to=evidence.settled_horizon(session, timeout=wait))
    with db.session(write=True) as session:
        return _append_checkpoint(session, actor=actor, found=found)


def _append_checkpoint(session: Session, *, actor: str, found: evidence.Figures) -> AuditEntry:
    return append(
        session,
        actor=actor,
        action=AuditAction.CHECKPOINT,
        object_type="events",
        object_id=str(found.last_event_id),
        data=found.as_data(),
    )


@dataclass(frozen=True)
class Verdict:
    """The answer of `verify`: ok, or the first entry (in chain order) that does not hold, and why."""

    ok: bool
    checked: int
    first_mismatch: int | None = None
    reason: str | None = None
    changed_events: list[int] = field(default_factory=list)
    head_seq: int | None = None
    head_hash: str | None = None


_CHAIN = select(AUDIT).where(AUDIT.c.seq.is_not(None)).order_by(AUDIT.c.seq)


@dataclass(frozen=True)
class _Checkpoint:
    entry_id: int
    seq: int
    figures: evidence.Figures


def verify(session: Session) -> Verdict:
    """Recompute the sealed chain (seq gap-free from 1, each prev_hash the hash before it, each hash
    its content's) and every checkpoint's events; entries still pending are not part of it yet.

    For a checkpoint the events up to its last id must be as many, hash alike, and each still give its
    own content_hash from its columns, so an event changed even with its content_hash kept is found.
    """
    checked = 0
    prev, expected = GENESIS, 1
    broken: tuple[int, str] | None = None
    checkpoints: list[_Checkpoint] = []
    with session.execute(_CHAIN, execution_options=evidence.STREAM) as result:
        for row in result.mappings():
            checked += 1
            broken = _broken_link(row, expected=expected, prev=prev)
            if broken is not None:
                break
            if row["action"] == AuditAction.CHECKPOINT:
                found = _checkpoint_figures(row["data"])
                if found is None:
                    broken = (row["id"], f"entry {row['id']} is a checkpoint without events, last_event_id and hash")
                    break
                checkpoints.append(_Checkpoint(row["id"], row["seq"], found))
            prev, expected = row["hash"], expected + 1

    head = (expected - 1, prev) if expected > 1 else (None, None)
    recount = evidence.recount(session, [c.figures.last_event_id for c in checkpoints])
    for point in checkpoints:
        reason = _checkpoint_problem(point, recount)
        if reason is not None:
            return Verdict(
                ok=False,
                checked=checked,
                first_mismatch=point.entry_id,
                reason=reason,
                changed_events=recount.changed,
                head_seq=head[0],
                head_hash=head[1],
            )
    if broken is not None:
        entry_id, reason = broken
        return Verdict(
            ok=False,
            checked=checked,
            first_mismatch=entry_id,
            reason=reason,
            changed_events=recount.changed,
            head_seq=head[0],
            head_hash=head[1],
        )
    return Verdict(ok=True, checked=checked, head_seq=head[0], head_hash=head[1])


def _broken_link(row: RowMapping, *, expected: int, prev: str) -> tuple[int, str] | None:
    entry_id = row["id"]
    if row["seq"] != expected:
        return entry_id, f"entry {entry_id} has seq {row['seq']} where {expected} is due: an entry is missing or moved"
    if row["prev_hash"] != prev:
        return entry_id, f"entry {entry_id} (seq {expected}) does not link to the hash of the entry before it"
    digest = entry_hash(
        entry_id=entry_id,
        seq=row["seq"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        object_type=row["object_type"],
        object_id=row["object_id"],
        unit=row["unit"],
        data=row["data"],
        prev_hash=row["prev_hash"],
    )
    if row["hash"] != digest:
        return entry_id, f"entry {entry_id} (seq {expected}) does not match its hash: it was changed"
    return None


def _checkpoint_figures(data: Any) -> evidence.Figures | None:
    if not isinstance(data, dict):
        return None
    events, last, digest = data.get("events"), data.get("last_event_id"), data.get("hash")
    if not (isinstance(events, int) and isinstance(last, int) and isinstance(digest, str)):
        return None
    return evidence.Figures(events=events, last_event_id=last, hash=digest)


def _checkpoint_problem(point: _Checkpoint, recount: evidence.Recount) -> str | None:
    expected, now = point.figures, recount.at[point.figures.last_event_id]
    where = f"checkpoint entry {point.entry_id} (events up to id {expected.last_event_id})"
    problems = []
    if now.events != expected.events:
        problems.append(f"{now.events} events are stored where {expected.events} were counted")
    if now.hash != expected.hash:
        problems.append("the hash over their content hashes differs")
    if recount.first_changed is not None and recount.first_changed <= expected.last_event_id:
        problems.append(f"event {recount.first_changed} no longer matches its content_hash")
    return f"{where}: {'; '.join(problems)}" if problems else None


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    actor: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None


def list_entries(
    session: Session,
    *,
    filters: AuditFilter,
    limit: int,
    after: int | None = None,
    units: Select[tuple[str]] | None = None,
) -> list[AuditEntry]:
    """Sealed entries, newest first by seq; `after` is the seq of the last entry of the previous page."""
    query = select(AuditEntry).where(AuditEntry.seq.is_not(None))
    for column, value in (
        (AuditEntry.action, filters.action),
        (AuditEntry.object_type, filters.object_type),
        (AuditEntry.object_id, filters.object_id),
        (AuditEntry.actor, filters.actor),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.time_from is not None:
        query = query.where(AuditEntry.at >= filters.time_from)
    if filters.time_to is not None:
        query = query.where(AuditEntry.at < filters.time_to)
    if units is not None:
        query = query.where(AuditEntry.unit.in_(units))
    if after is not None:
        query = query.where(AuditEntry.seq < after)
    return list(session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit)))
