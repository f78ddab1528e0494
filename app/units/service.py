"""The org-unit tree (单位): registered by admins, or on the fly when an event names a new unit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, Select, Table, func, literal, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.db import after_commit, insert_ignoring, utcnow
from app.errors import InvalidInput, NotFound
from app.units.models import Unit

UNITS: Table = Unit.__table__  # type: ignore[assignment]

# The key of the PostgreSQL advisory lock that serialises changes to the unit tree.
TREE_LOCK = 0x5E_0001


# The service never deletes a unit, so a unit seen in the database stays there: each process remembers
# the ids it has seen committed (per engine) and spares ingest the INSERT … ON CONFLICT round trip for
# them. Should a unit vanish all the same (a hand-made DELETE, a test emptying its tables), the event's
# foreign key refuses the insert and the caller forgets what it knew (`forget_units`) and tries again.
_KNOWN: WeakKeyDictionary[Any, set[str]] = WeakKeyDictionary()


def _pool(session: Session) -> Any:
    bind = session.get_bind()
    return bind.pool if isinstance(bind, Engine) else bind.engine.pool


def forget_units(session: Session | None = None) -> None:
    """Forget the units seen through this session's database (None: through every database)."""
    if session is None:
        _KNOWN.clear()
    else:
        _KNOWN.pop(_pool(session), None)


def register_units(session: Session, unit_ids: Sequence[str], *, actor: str) -> None:
    """Register units an event names but nobody registered yet, as top-level units."""
    known = _KNOWN.setdefault(_pool(session), set())
    fresh = sorted(set(unit_ids) - known)
    if not fresh:
        return
    after_commit(session, lambda: known.update(fresh))
    now = utcnow()
    rows = [
        {"id": unit_id, "parent_id": None, "registered_by": "event", "created_at": now, "updated_at": now}
        for unit_id in fresh
    ]
    statement = insert_ignoring(session, UNITS, conflict=("id",), returning=("id",))
    created = [row.id for row in session.connection().execute(statement, rows)]
    audit.record_all(
        session,
        [
            audit.Change(actor, audit.AuditAction.UNIT_CHANGED, "unit", unit_id, {"registered_by": "event"}, unit_id)
            for unit_id in created
        ],
    )


def subtree(unit_id: str, *, name: str = "unit_tree") -> Select[tuple[str]]:
    """The ids of `unit_id` and every unit below it, as a subquery to filter with (`name` tells two apart
    in one statement, e.g. a filter by unit inside a scoped key's units)."""
    tree = select(literal(unit_id).label("id")).cte(name, recursive=True)
    tree = tree.union(select(Unit.id).where(Unit.parent_id == tree.c.id))
    return select(tree.c.id)


def ancestors(session: Session, unit_id: str) -> list[str]:
    """`unit_id` and the units above it, nearest first."""
    chain: list[str] = []
    current: str | None = unit_id
    while current is not None and current not in chain:
        chain.append(current)
        current = session.scalar(select(Unit.parent_id).where(Unit.id == current))
    return chain


@dataclass(frozen=True)
class Saved:
    unit: Unit
    created: bool


def put_unit(
    session: Session,
    *,
    unit_id: str,
    parent: str | None,
    label_zh: str | None,
    label_en: str | None,
    actor: str,
) -> Saved:
    """Create or replace a unit; its parent must exist and the tree must stay a tree."""
    if session.get_bind().dialect.name == "postgresql":
        # Two concurrent moves (A under B, B under A) could each pass the cycle check alone.
        session.execute(select(func.pg_advisory_xact_lock(TREE_LOCK)))
    if parent is not None:
        if session.get(Unit, parent) is None:
            raise InvalidInput([(("body", "parent"), f"unknown unit {parent!r}: register the parent first")])
        if unit_id in ancestors(session, parent):
            raise InvalidInput([(("body", "parent"), f"{parent!r} is {unit_id!r} or below it: that makes a cycle")])
    now = utcnow()
    values = {"parent_id": parent, "label_zh": label_zh, "label_en": label_en, "registered_by": "admin"}
    created = (
        session.connection()
        .execute(
            insert_ignoring(session, UNITS, conflict=("id",), returning=("id",)),
            {"id": unit_id, "created_at": now, "updated_at": now, **values},
        )
        .first()
    )
    if created is None:
        session.execute(update(Unit).where(Unit.id == unit_id).values(updated_at=now, **values))
    unit = session.get(Unit, unit_id, populate_existing=True)
    assert unit is not None
    audit.record(
        session,
        actor=actor,
        action=audit.AuditAction.UNIT_CHANGED,
        object_type="unit",
        object_id=unit_id,
        data={"created": created is not None, "parent": parent, "label_zh": label_zh, "label_en": label_en},
        unit=unit_id,
    )
    return Saved(unit=unit, created=created is not None)


def get_unit(session: Session, *, unit_id: str, scope: str | None = None) -> Unit:
    query = select(Unit).where(Unit.id == unit_id)
    if scope is not None:
        query = query.where(Unit.id.in_(subtree(scope)))
    unit = session.scalars(query).first()
    if unit is None:
        raise NotFound(f"no unit {unit_id!r}")
    return unit


def list_units(
    session: Session,
    *,
    limit: int,
    after: str | None = None,
    parent: str | None = None,
    scope: str | None = None,
) -> list[Unit]:
    query = select(Unit).order_by(Unit.id).limit(limit)
    if after is not None:
        query = query.where(Unit.id > after)
    if parent is not None:
        query = query.where(Unit.parent_id == parent)
    if scope is not None:
        query = query.where(Unit.id.in_(subtree(scope)))
    return list(session.scalars(query))
