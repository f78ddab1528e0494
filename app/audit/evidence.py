"""Events as evidence: the figures a checkpoint records, and their recomputation by verify.

A checkpoint covers the events with id up to a horizon: their count and SHA-256 (hex) over the
concatenation of their `content_hash` values (64 hex characters each, ASCII) in id order. Rows are
streamed, never loaded at once: a checkpoint of a million events takes a few seconds; verifying them,
which also rebuilds every event's content hash from its columns, about twenty.
"""

from __future__ import annotations

import hashlib
import json
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, Text, cast, select, text
from sqlalchemy.orm import Session

from app.audit.chain import event_hash_with
from app.errors import AppError
from app.events.models import Event

EVENTS: Table = Event.__table__  # type: ignore[assignment]
STREAM = {"yield_per": 10_000}
# Ids of events whose columns no longer match their content_hash that verify lists, at most.
MAX_LISTED = 100


class EventsBusy(AppError):
    """Transactions writing events did not finish in time, so a checkpoint cannot tell what is stored."""

    status = 503
    title = "Events are still being written"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


@dataclass(frozen=True)
class Figures:
    """What a checkpoint records of the events with id up to `last_event_id`."""

    events: int
    last_event_id: int
    hash: str

    def as_data(self) -> dict[str, Any]:
        return {"events": self.events, "last_event_id": self.last_event_id, "hash": self.hash}


# PostgreSQL hands out ids from a sequence when a row is inserted, so transactions commit events out of
# id order: a checkpoint that counted "ids up to the largest committed id" would miss an id a slower
# transaction holds and commits later, and verify would then report a tamper that never happened. The
# horizon is therefore the last id handed out, taken once every transaction that could hold an id up
# to it has ended. Such a transaction holds a write lock on `events` from before it drew its id (the
# lock comes with the INSERT statement) until it ends, so waiting for the holders of that lock seen
# after reading the sequence is enough. Ingest itself never waits: only the checkpoint does.
_LAST_ID = text("SELECT pg_sequence_last_value(CAST(pg_get_serial_sequence('events', 'id') AS regclass))")
_WRITERS = text(
    "SELECT DISTINCT virtualtransaction FROM pg_locks "
    "WHERE locktype = 'relation' AND relation = to_regclass('events') AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock') "
    "AND pid IS DISTINCT FROM pg_backend_pid()"
)
# Every transaction holds the lock on its own virtual transaction id until it ends.
_RUNNING = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY(CAST(:ids AS text[]))"
)


def settled_horizon(session: Session, *, timeout: float) -> int | None:
    """The highest event id whose fate is settled: every event up to it is committed or will never be.

    None on SQLite, where writers are serialised and ids are committed in order, so every event the
    transaction sees is settled. On PostgreSQL this waits (at most `timeout` seconds, else EventsBusy)
    for the transactions that are writing events; call it before the transaction takes other locks.
    """
    if session.get_bind().dialect.name != "postgresql":
        return None
    last = session.scalar(_LAST_ID)
    writers = list(session.scalars(_WRITERS))
    deadline = time.monotonic() + timeout
    pause = 0.002
    while writers and session.scalar(_RUNNING, {"ids": writers}):
        if time.monotonic() > deadline:
            raise EventsBusy(f"transactions writing events did not finish within {timeout:g} s; try again")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    return int(last or 0)


def figures(session: Session, *, up_to: int | None) -> Figures:
    """Count and hash the stored events with id ≤ `up_to` (all the session sees when None)."""
    query = select(EVENTS.c.id, EVENTS.c.content_hash).order_by(EVENTS.c.id)
    if up_to is not None:
        query = query.where(EVENTS.c.id <= up_to)
    digest = hashlib.sha256()
    count = last = 0
    for partition in session.execute(query, execution_options=STREAM).partitions():
        for event_id, content_hash in partition:
            digest.update(content_hash.encode())
            last = event_id
        count += len(partition)
    return Figures(events=count, last_event_id=last, hash=digest.hexdigest())


# What an event's content hash is made of, with its id and stored hash (not received_at, which is not content).
# The attributes come as JSON text, parsed here: far quicker than the driver's jsonb loader on PostgreSQL.
_CONTENT_COLUMNS = [
    cast(column, Text).label(column.name) if column.name == "attributes" else column
    for column in EVENTS.c
    if column.name != "received_at"
]


@dataclass(frozen=True)
class Recount:
    """The events as they are now, measured at each horizon of the checkpoints under verification."""

    at: dict[int, Figures]
    changed: list[int]  # ids of events whose columns no longer give their content_hash (the first MAX_LISTED)
    first_changed: int | None


def recount(session: Session, horizons: Sequence[int]) -> Recount:
    """One pass over the events up to the highest horizon: the figures at every horizon, and every event
    whose columns no longer give its stored content_hash."""
    if not horizons:
        return Recount(at={}, changed=[], first_changed=None)
    bounds = sorted(set(horizons))
    query = select(*_CONTENT_COLUMNS).where(EVENTS.c.id <= bounds[-1]).order_by(EVENTS.c.id)
    at: dict[int, Figures] = {}
    changed: list[int] = []
    first_changed: int | None = None
    digest = hashlib.sha256()
    count = last = 0
    index = 0  # bounds[index] is the next horizon to record

    def close_until(event_id: int) -> None:
        # Record every horizon below `event_id`: the figures so far are theirs.
        nonlocal index
        stop = bisect_left(bounds, event_id, lo=index)
        for bound in bounds[index:stop]:
            at[bound] = Figures(events=count, last_event_id=last, hash=digest.hexdigest())
        index = stop

    for partition in session.execute(query, execution_options=STREAM).mappings().partitions():
        for row in partition:
            event_id = row["id"]
            if index < len(bounds) and bounds[index] < event_id:
                close_until(event_id)
            stored = row["content_hash"] or ""
            if stored != _rebuilt_hash(row):
                first_changed = event_id if first_changed is None else first_changed
                if len(changed) < MAX_LISTED:
                    changed.append(event_id)
            digest.update(stored.encode())
            count += 1
            last = event_id
    close_until(bounds[-1] + 1)
    return Recount(at=at, changed=changed, first_changed=first_changed)


def _rebuilt_hash(row: Any) -> str | None:
    try:
        return event_hash_with(row, json.loads(row["attributes"]))
    except (ValueError, TypeError, OverflowError):
        return None  # columns no event could have been posted with: changed
