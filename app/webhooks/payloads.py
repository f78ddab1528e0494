"""The `data` of a delivery: the object as `GET /v1/<objects>/{id}` shows it at the end of the change."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.alerts.models import Alert, AlertTransition
from app.alerts.router import alert_detail
from app.breakers.models import Breaker, BreakerChange
from app.breakers.router import breaker_detail
from app.exemptions.models import Exemption
from app.exemptions.router import exemption_out


def snapshots(session: Session, objects: Iterable[tuple[str, int]], now: datetime) -> dict[tuple[str, int], Any]:
    """(kind, id) → data, for many objects with one read of each kind's rows and one of their histories."""
    wanted: dict[str, list[int]] = defaultdict(list)
    for kind, object_id in objects:
        wanted[kind].append(object_id)
    found: dict[tuple[str, int], Any] = {}
    if ids := sorted(set(wanted.pop("alert", []))):
        transitions: dict[int, list[AlertTransition]] = defaultdict(list)
        query = select(AlertTransition).where(AlertTransition.alert_id.in_(ids)).order_by(AlertTransition.id)
        for transition in session.scalars(query):
            transitions[transition.alert_id].append(transition)
        for alert in session.scalars(select(Alert).where(Alert.id.in_(ids))):
            detail = alert_detail(session, alert, transitions[alert.id])
            found["alert", alert.id] = detail.model_dump(mode="json", by_alias=True)
    if ids := sorted(set(wanted.pop("breaker", []))):
        changes: dict[int, list[BreakerChange]] = defaultdict(list)
        query_changes = select(BreakerChange).where(BreakerChange.breaker_id.in_(ids)).order_by(BreakerChange.id)
        for change in session.scalars(query_changes):
            changes[change.breaker_id].append(change)
        for breaker in session.scalars(select(Breaker).where(Breaker.id.in_(ids))):
            found["breaker", breaker.id] = breaker_detail(session, breaker, changes[breaker.id]).model_dump(
                mode="json", by_alias=True
            )
    if ids := sorted(set(wanted.pop("exemption", []))):
        for exemption in session.scalars(select(Exemption).where(Exemption.id.in_(ids))):
            found["exemption", exemption.id] = exemption_out(exemption, now).model_dump(mode="json", by_alias=True)
    if wanted:
        raise ValueError(f"unknown kinds {sorted(wanted)}")
    return found
