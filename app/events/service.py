"""Storing events exactly once, and reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, or_, select, text
from sqlalchemy.orm import Session

from app.db import insert_ignoring, utcnow
from app.errors import Conflict, InvalidInput, Loc, NotFound
from app.events.domains import action_errors, attribute_errors, json_value_errors
from app.events.models import Event
from app.events.schemas import EventIn, OperatorKind
from app.jsonutil import canonical_hash, dumps
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


def domain_errors(event: EventIn) -> list[tuple[Loc, str]]:
    """Every rule of the domain that `event` breaks, located inside the event."""
    errors = list(action_errors(event.domain, event.action))
    errors += attribute_errors(event.domain, event.action, event.attributes)
    errors += json_value_errors(event.attributes, ("attributes",))
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


def ingest(session: Session, *, source: str, events: Sequence[EventIn], batch: bool = False) -> list[Stored]:
    """Store each event once per (source, source_event_id); answer new, duplicate, or raise Conflict.

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
    ids = _insert_new(session, ordered)
    new = set(ids)

    missing = [key for key in rows if key not in ids]
    if missing:
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
        results.append(Stored(id=ids[sid], duplicate=not (first and sid in new), event=event))
    return results


# PostgreSQL: the rows travel as one array per column and are unnested server-side. One small
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
_UNNEST_INSERT = text(
    f"INSERT INTO events ({', '.join(name for name, _ in _COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{name} AS {kind}[])' for name, kind in _COLUMNS)}) "
    "ON CONFLICT (source, source_event_id) DO NOTHING RETURNING id, source_event_id"
)


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the rows that are not stored yet; the ids of those inserted, by source_event_id."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        columns: dict[str, list[Any]] = {name: [] for name, _ in _COLUMNS}
        for row in rows:
            for name, values in columns.items():
                values.append(row[name])
        columns["attributes"] = [dumps(value) for value in columns["attributes"]]
        result = connection.execute(_UNNEST_INSERT, columns)
    else:
        # SQLite: one compiled statement for many rows; SQLAlchemy batches it into multi-row INSERTs
        # with RETURNING ("insertmanyvalues").
        statement = insert_ignoring(
            session, EVENTS, conflict=("source", "source_event_id"), returning=("id", "source_event_id")
        )
        result = connection.execute(statement, rows)
    return {sid: eid for eid, sid in result}


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
