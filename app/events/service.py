"""Storing events exactly once, and reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, or_, select, text
from sqlalchemy.orm import Session

from app.db import described, driver_rows, insert_ignoring, utcnow
from app.errors import Conflict, InvalidInput, Loc, NotFound, Unauthorized
from app.events.domains import action_errors, attribute_errors, json_value_errors
from app.events.models import Event
from app.events.schemas import EventIn, OperatorKind
from app.jsonutil import canonical_hash, dumps, size_errors
from app.rules.aggregates import LOCKING_CONDITION, NO_LOCKS, LockIds
from app.units import service as unit_service

EVENTS: Table = Event.__table__  # type: ignore[assignment]
_EXISTING = select(Event.id, Event.source_event_id, Event.content_hash).where(
    Event.source == bindparam("source"), Event.source_event_id.in_(bindparam("ids", expanding=True))
)


@dataclass(frozen=True)
class Stored:
    id: int
    duplicate: bool
    event: EventIn
    # True when the statement that stored the event also found no open breaker on any subject of the
    # request: nothing to look up for the answer unless the request's own evaluation trips one.
    unblocked: bool = False


def domain_errors(event: EventIn) -> list[tuple[Loc, str]]:
    """Every rule of the domain that `event` breaks, located inside the event."""
    errors = list(action_errors(event.domain, event.action))
    errors += attribute_errors(event.domain, event.action, event.attributes)
    errors += json_value_errors(event.attributes, ("attributes",))
    errors += size_errors(event.attributes, ("attributes",))
    operator = event.operator
    if operator.kind is OperatorKind.AUXILIARY and operator.responsible_officer is None:
        errors.append((("operator", "responsible_officer"), "required when the operator is an auxiliary"))
    if operator.kind is OperatorKind.POLICE and operator.responsible_officer is not None:
        errors.append((("operator", "responsible_officer"), "a police officer answers for themselves: leave it null"))
    return errors


def item_loc(index: int, *, batch: bool) -> Loc:
    """Where an event sits in the request body: the body itself, or its place in a batch."""
    return ("body", "events", index) if batch else ("body",)


def validate(events: Sequence[EventIn], *, batch: bool) -> None:
    """Raise one 422 naming every bad field of every event (in a batch, with the item's index)."""
    problems = [
        ((*item_loc(index, batch=batch), *loc), msg)
        for index, event in enumerate(events)
        for loc, msg in domain_errors(event)
    ]
    if problems:
        raise InvalidInput(problems)


def canonical_content(source: str, event: EventIn) -> dict[str, Any]:
    """The content that decides sameness: absent and null are alike, times compare as instants."""
    body = event.model_dump(mode="json", exclude_none=True)
    body["occurred_at"] = event.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    body["operator"] = event.operator.model_dump(mode="json", exclude_none=True)
    body["attributes"] = event.attributes
    body["source"] = source
    return body


def contract_shape(source: str, event: EventIn, event_id: int | None = None) -> dict[str, Any]:
    """The event as rules read it: the contract's JSON shape (enums as text), plus ``source`` and ``id``."""
    operator = event.operator
    business_unit = event.business_unit
    return {
        "id": event_id,
        "source": source,
        "source_event_id": event.source_event_id,
        "domain": event.domain.value,
        "action": event.action,
        "occurred_at": event.occurred_at,
        "operator": {
            "id": operator.id,
            "kind": operator.kind.value,
            "unit": operator.unit,
            "responsible_officer": operator.responsible_officer,
        },
        "business_unit": None if business_unit is None else {"id": business_unit.id, "kind": business_unit.kind.value},
        "agent_id": event.agent_id,
        "object_ref": event.object_ref,
        "attributes": event.attributes,
    }


def _row(source: str, event: EventIn, received_at: datetime) -> dict[str, Any]:
    return {
        "source": source,
        "source_event_id": event.source_event_id,
        "domain": event.domain.value,
        "action": event.action,
        "occurred_at": event.occurred_at,
        "operator_id": event.operator.id,
        "operator_kind": event.operator.kind.value,
        "operator_unit": event.operator.unit,
        "responsible_officer": event.operator.responsible_officer,
        "business_unit_id": event.business_unit.id if event.business_unit else None,
        "business_unit_kind": event.business_unit.kind.value if event.business_unit else None,
        "agent_id": event.agent_id,
        "object_ref": event.object_ref,
        "attributes": event.attributes,
        "content_hash": canonical_hash(canonical_content(source, event)),
        "received_at": received_at,
    }


def ingest(
    session: Session,
    *,
    source: str,
    events: Sequence[EventIn],
    batch: bool = False,
    key_id: int | None = None,
    locks: LockIds = NO_LOCKS,
) -> list[Stored]:
    """Store each event once per (source, source_event_id); answer new, duplicate, or raise Conflict.

    With ``key_id``, the events are stored only while that API key is active (Unauthorized otherwise): the
    check rides on the insert on PostgreSQL (see ``_KEY_ACTIVE``); elsewhere the caller has checked it.
    ``locks`` (the advisory locks that evaluating the events will need, PostgreSQL) are taken by the same
    statement, before it inserts anything.

    All or nothing: the caller's transaction holds every row, and any conflict raises before commit.
    Safe under concurrency: the insert skips rows another transaction stored first (it waits for that
    transaction on PostgreSQL; SQLite writers are already serialised by BEGIN IMMEDIATE).
    """
    if not events:
        return []  # an empty batch stores nothing (and SQLite has no INSERT of zero rows)
    received_at = utcnow()
    rows: dict[str, dict[str, Any]] = {}
    index_of: dict[str, int] = {}
    for index, event in enumerate(events):
        row = _row(source, event, received_at)
        key = event.source_event_id
        if key in rows:
            if rows[key]["content_hash"] != row["content_hash"]:
                raise Conflict(
                    f"events {index_of[key]} and {index} share source_event_id {key!r} with different content",
                    errors=[((*item_loc(index, batch=batch), "source_event_id"), "same id, other content")],
                )
            continue
        rows[key] = row
        index_of[key] = index

    unit_service.register_units(session, sorted({row["operator_unit"] for row in rows.values()}), actor=source)

    # A fixed order (by source_event_id) means concurrent batches lock rows in the same order and
    # cannot deadlock each other on PostgreSQL.
    ordered = [rows[key] for key in sorted(rows)]
    ids, unblocked = _insert_new(session, ordered, key_id, locks)
    new = set(ids)

    missing = [key for key in rows if key not in ids]
    if missing or not rows:
        if key_id is not None and session.execute(_KEY_IS_ACTIVE, {"key_id": key_id}).first() is None:
            raise Unauthorized("the API key is unknown or revoked")
        existing = session.execute(_EXISTING, {"source": source, "ids": missing})
        for eid, sid, stored_hash in existing:
            if stored_hash != rows[sid]["content_hash"]:
                index = index_of[sid]
                where = f"event {index}" if batch else "the event"
                raise Conflict(
                    f"{where}: source_event_id {sid!r} is already stored with different content",
                    errors=[((*item_loc(index, batch=batch), "source_event_id"), "stored with other content")],
                    existing_id=eid,
                )
            ids[sid] = eid

    results: list[Stored] = []
    for event in events:
        sid = event.source_event_id
        first = index_of[sid] == len(results)
        results.append(Stored(id=ids[sid], duplicate=not (first and sid in new), event=event, unblocked=unblocked))
    return results


# PostgreSQL, several rows: they travel as one array per column and are unnested server-side. One small
# statement with 16 parameters, whatever the batch size, instead of thousands of placeholders that
# the driver would rewrite for every batch; it is also prepared once per connection.
_COLUMNS = (
    ("source", "text"),
    ("source_event_id", "text"),
    ("domain", "text"),
    ("action", "text"),
    ("occurred_at", "timestamptz"),
    ("operator_id", "text"),
    ("operator_kind", "text"),
    ("operator_unit", "text"),
    ("responsible_officer", "text"),
    ("business_unit_id", "text"),
    ("business_unit_kind", "text"),
    ("agent_id", "text"),
    ("object_ref", "text"),
    ("attributes", "jsonb"),
    ("content_hash", "text"),
    ("received_at", "timestamptz"),
)
# The same statement tells whether an open breaker stops any subject of the request (a superset of the
# subjects is fine: the answer's own lookup decides which breakers cover which event). Breakers are rare,
# so most requests skip that lookup, a round trip of its own.
_UNBLOCKED = (
    "NOT EXISTS (SELECT 1 FROM breakers b WHERE b.state = 'open' AND b.subject_id = ANY(CAST(:subjects AS text[]))"
    " AND (b.suspended_until IS NULL OR b.suspended_until > CAST(:now AS timestamptz)))"
)
# And it stores nothing unless the sender's key is still active (``key_id``; None: the caller checked):
# the key lookup of a request needs no round trip of its own, and a revoked key is refused at once. It
# also takes the advisory locks of the rule windows the events go to (aggregates.LOCKING_CONDITION), so
# evaluation has no locking statement of its own; later statements of the transaction see what the
# previous holders of those locks committed.
_KEY_ACTIVE = (
    f"WHERE {LOCKING_CONDITION} AND (CAST(:key_id AS bigint) IS NULL"
    " OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = CAST(:key_id AS bigint) AND k.revoked_at IS NULL))"
)
_RETURNING = f"ON CONFLICT (source, source_event_id) DO NOTHING RETURNING id, source_event_id, {_UNBLOCKED}"
_RETURNED = ("id", "source_event_id", "unblocked")
_UNNEST_INSERT = described(
    text(
        f"INSERT INTO events ({', '.join(name for name, _ in _COLUMNS)}) "
        f"SELECT * FROM unnest({', '.join(f'CAST(:{name} AS {kind}[])' for name, kind in _COLUMNS)}) "
        f"{_KEY_ACTIVE} {_RETURNING}"
    ),
    *_RETURNED,
)
# One event: scalar parameters cost the driver a third of what sixteen one-element arrays do.
_SINGLE_INSERT = described(
    text(
        f"INSERT INTO events ({', '.join(name for name, _ in _COLUMNS)}) "
        f"SELECT {', '.join(f'CAST(:{name} AS {kind})' for name, kind in _COLUMNS)} {_KEY_ACTIVE} {_RETURNING}"
    ),
    *_RETURNED,
)
_KEY_IS_ACTIVE = text("SELECT 1 FROM api_keys WHERE id = :key_id AND revoked_at IS NULL")


def _subjects(rows: list[dict[str, Any]]) -> list[str]:
    """Every id the rows' events could be stopped under (see breakers.state.event_subjects)."""
    found = {
        row[name]
        for row in rows
        for name in ("operator_id", "operator_unit", "responsible_officer", "agent_id", "business_unit_id")
    }
    found.discard(None)
    return sorted(found)


def _insert_new(
    session: Session, rows: list[dict[str, Any]], key_id: int | None, locks: LockIds
) -> tuple[dict[str, int], bool]:
    """Insert the rows that are not stored yet: the ids of those inserted, by source_event_id, and whether
    the insert found no open breaker on their subjects (False: unknown, or some found).

    With ``key_id`` (PostgreSQL), nothing is inserted unless that key is active."""
    if not rows:
        # An empty batch: SQLite would be sent `INSERT INTO events DEFAULT VALUES ON CONFLICT …`, a syntax error.
        return {}, False
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        extra = {
            "subjects": _subjects(rows),
            "now": rows[0]["received_at"],
            "key_id": key_id,
            "lock_ids": locks.ids,
            "lock_shared": locks.shared,
        }
        if len(rows) == 1:
            (row,) = rows
            returned = driver_rows(connection, _SINGLE_INSERT, {**row, "attributes": dumps(row["attributes"]), **extra})
        else:
            columns: dict[str, list[Any]] = {name: [] for name, _ in _COLUMNS}
            for row in rows:
                for name, values in columns.items():
                    values.append(row[name])
            columns["attributes"] = [dumps(value) for value in columns["attributes"]]
            returned = driver_rows(connection, _UNNEST_INSERT, {**columns, **extra})
        ids = {sid: eid for eid, sid, _ in returned}
        return ids, bool(returned) and len(returned) == len(rows) and all(free for _, _, free in returned)
    # SQLite: one compiled statement, batched into multi-row INSERTs with RETURNING ("insertmanyvalues").
    statement = insert_ignoring(
        session, EVENTS, conflict=("source", "source_event_id"), returning=("id", "source_event_id")
    )
    return {sid: eid for eid, sid in connection.execute(statement, rows)}, False


def get_event(session: Session, *, event_id: int, units: Select[tuple[str]] | None = None) -> Event:
    query = select(Event).where(Event.id == event_id)
    if units is not None:
        query = query.where(Event.operator_unit.in_(units))
    event = session.scalars(query).first()
    if event is None:
        raise NotFound(f"no event with id {event_id}")
    return event


@dataclass(frozen=True)
class EventFilter:
    domain: str | None = None
    operator: str | None = None
    business_unit: str | None = None
    agent: str | None = None
    source: str | None = None
    action: str | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None


def list_events(
    session: Session,
    *,
    filters: EventFilter,
    limit: int,
    after: tuple[datetime, int] | None = None,
    units: Select[tuple[str]] | None = None,
) -> list[Event]:
    """Newest first by (occurred_at, id): a stable keyset order that inserts cannot shift."""
    query = select(Event)
    for column, value in (
        (Event.domain, filters.domain),
        (Event.operator_id, filters.operator),
        (Event.business_unit_id, filters.business_unit),
        (Event.agent_id, filters.agent),
        (Event.source, filters.source),
        (Event.action, filters.action),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.time_from is not None:
        query = query.where(Event.occurred_at >= filters.time_from)
    if filters.time_to is not None:
        query = query.where(Event.occurred_at < filters.time_to)
    if units is not None:
        query = query.where(Event.operator_unit.in_(units))
    if after is not None:
        at, last_id = after
        # Spelled out rather than a row comparison so SQLite and PostgreSQL both use the index.
        query = query.where(or_(Event.occurred_at < at, and_(Event.occurred_at == at, Event.id < last_id)))
    query = query.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit)
    return list(session.scalars(query))
