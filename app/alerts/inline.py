"""Inline evaluation: the rules run on the events a request stores, inside the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.alerts.evaluate import Applied, Evaluator, Key
from app.breakers.models import Breaker
from app.breakers.state import covers, event_subjects, open_breakers
from app.db import Database
from app.events.schemas import EventIn
from app.events.service import Stored, contract_shape
from app.rules.aggregates import Delta, LockIds, StaleAggregates, ensure_built
from app.rules.spec import RuleSet
from app.rules.windows import Window
from app.units.service import forget_units

log = logging.getLogger("supervision.rules")

T = TypeVar("T")
ATTEMPTS = 3


@dataclass(frozen=True)
class Verdict:
    """What the response tells the source about one event."""

    alerts: list[int]  # alerts this event raised or updated (cleared ones included: their value changed)
    breakers: list[Breaker]  # open breakers covering the event's subjects in its domain

    @property
    def blocked(self) -> bool:
        return bool(self.breakers)


@dataclass
class Plan:
    """What a request's events do to the rules, worked out before they are stored: the keys each touches, their
    share of the windows' figures, and the locks of those keys (taken by the statement that stores the
    events, so that evaluation needs no statement of its own for them). Events are numbered by their
    place in the request until the store gives them ids."""

    shapes: list[dict[str, Any]]
    touched: list[dict[Key, Window]]
    deltas: dict[Key, Delta]
    locks: LockIds


def plan(evaluator: Evaluator, *, source: str, events: Sequence[EventIn]) -> Plan:
    shapes = [contract_shape(source, event, index) for index, event in enumerate(events)]
    deltas: dict[Key, Delta] = {}
    touched = [evaluator.touched(shape, event.occurred_at, deltas) for shape, event in zip(shapes, events, strict=True)]
    return Plan(shapes, touched, deltas, evaluator.lock_ids(key for found in touched for key in found))


def evaluate_stored(
    session: Session,
    evaluator: Evaluator,
    *,
    source: str,
    stored: Sequence[Stored],
    now: datetime,
    planned: Plan | None = None,
) -> tuple[list[Verdict], Applied]:
    """Evaluate every rule the new events match (duplicates were evaluated when first stored).

    With ``planned`` (made for these events, whose store took its locks), the plan's work is used, unless some
    event was a duplicate: then the events are worked out again (their keys are among the planned ones)."""
    if planned is not None and not any(item.duplicate for item in stored):
        ids = [item.id for item in stored]
        shapes = planned.shapes
        for shape, event_id in zip(shapes, ids, strict=True):
            shape["id"] = event_id
        for delta in planned.deltas.values():
            delta.counted = [(at, ids[index]) for at, index in delta.counted]
        touched, deltas = planned.touched, planned.deltas
        keys = {key: window for found in touched for key, window in found.items()}
        locked = True
    else:
        shapes = [contract_shape(source, item.event, item.id) for item in stored]
        touched = []
        keys = {}
        deltas = {}
        for item, shape in zip(stored, shapes, strict=True):
            found = {} if item.duplicate else evaluator.touched(shape, item.event.occurred_at, deltas)
            touched.append(found)
            keys.update(found)
        locked = False
    applied = evaluator.apply(session, keys, actor=f"rules:{source}"[:64], now=now, deltas=deltas, locked=locked)
    unblocked = all(item.unblocked for item in stored) and not applied.tripped
    breakers = [] if unblocked else open_breakers(session, {s for shape in shapes for s in event_subjects(shape)}, now)
    verdicts = []
    for shape, found in zip(shapes, touched, strict=True):
        alerts = sorted({applied.alert_of[key] for key in found if key in applied.alert_of})
        verdicts.append(Verdict(alerts=alerts, breakers=[b for b in breakers if covers(b, shape)]))
    return verdicts, applied


def evaluating(
    db: Database, zone: tzinfo, rules: Callable[[bool], RuleSet], work: Callable[[Session, Evaluator], T]
) -> T:
    """Run ``work`` in one write transaction with an evaluator of the rules in force (``rules(False)``).

    When the stored aggregates of a rule turn out to follow another definition than this worker's (a
    reload made elsewhere, or rows not built yet), the transaction rolls back, the worker catches up
    (``rules(True)``), the rules' aggregates are built, and ``work`` runs again."""
    in_force = rules(False)
    for attempt in range(ATTEMPTS):
        evaluator = Evaluator(in_force, zone)
        try:
            with db.session(write=True) as session:
                return work(session, evaluator)
        except StaleAggregates as exc:
            if attempt == ATTEMPTS - 1:
                raise
            log.info("aggregates of %s follow other rules: catching up", ", ".join(exc.rule_ids))
            in_force = rules(True)
            ensure_built(db, in_force, zone)
        except IntegrityError:
            # An org unit this process had seen is gone (see units.service): register the event's units again.
            if attempt == ATTEMPTS - 1:
                raise
            with db.session() as session:
                forget_units(session)
    raise AssertionError("unreachable")  # pragma: no cover
