"""Inline evaluation: the rules run on the events a request stores, inside the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.alerts.evaluate import Applied, Evaluator, Key
from app.breakers.models import Breaker
from app.breakers.state import covers, event_subjects, open_breakers
from app.events.service import Stored, contract_shape
from app.rules.windows import Window


@dataclass(frozen=True)
class Verdict:
    """What the response tells the source about one event."""

    alerts: list[int]  # alerts this event raised or updated (cleared ones included: their value changed)
    breakers: list[Breaker]  # open breakers covering the event's subjects in its domain

    @property
    def blocked(self) -> bool:
        return bool(self.breakers)


def evaluate_stored(
    session: Session, evaluator: Evaluator, *, source: str, stored: Sequence[Stored], now: datetime
) -> tuple[list[Verdict], Applied]:
    """Evaluate every rule the new events match (duplicates were evaluated when first stored)."""
    shapes = [contract_shape(source, item.event, item.id) for item in stored]
    touched: list[dict[Key, Window]] = []
    keys: dict[Key, Window] = {}
    for item, shape in zip(stored, shapes, strict=True):
        found = {} if item.duplicate else evaluator.touched(shape, item.event.occurred_at)
        touched.append(found)
        keys.update(found)
    applied = evaluator.apply(session, keys, actor=f"rules:{source}"[:64], now=now)
    breakers = open_breakers(session, {s for shape in shapes for s in event_subjects(shape)}, now)
    verdicts = []
    for shape, found in zip(shapes, touched, strict=True):
        alerts = sorted({applied.alert_of[key] for key in found if key in applied.alert_of})
        verdicts.append(Verdict(alerts=alerts, breakers=[b for b in breakers if covers(b, shape)]))
    return verdicts, applied
