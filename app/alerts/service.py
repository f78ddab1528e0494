"""Reading alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, false, or_, select
from sqlalchemy.orm import Session

from app.alerts.models import Alert
from app.errors import NotFound
from app.units.service import subtree


@dataclass(frozen=True)
class AlertFilter:
    stage: str | None = None
    domain: str | None = None
    rule: str | None = None
    subject: str | None = None
    unit: str | None = None
    severity: str | None = None
    overdue: bool | None = None
    cleared: bool | None = None
    time_from: datetime | None = None
    time_to: datetime | None = None


def _scoped(query: Select[Alert], units: Select[tuple[str]] | None) -> Select[Alert]:
    return query if units is None else query.where(Alert.unit.in_(units))


def list_alerts(
    session: Session,
    *,
    filters: AlertFilter,
    limit: int,
    after: tuple[datetime, int] | None = None,
    units: Select[tuple[str]] | None = None,
) -> list[Alert]:
    """Newest window first, then newest alert: (window_start, id) descending, a stable keyset order."""
    query = select(Alert)
    for column, value in (
        (Alert.stage, filters.stage),
        (Alert.rule_id, filters.rule),
        (Alert.subject_id, filters.subject),
        (Alert.severity, filters.severity),
        (Alert.cleared, filters.cleared),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.domain is not None:
        query = query.where(Alert.domains.contains(f",{filters.domain},"))
    if filters.unit is not None:
        query = query.where(Alert.unit.in_(subtree(filters.unit)))
    if filters.overdue:
        query = query.where(false())  # supervisions with a due date arrive with the alert workflow
    if filters.time_from is not None:
        query = query.where(Alert.window_start >= filters.time_from)
    if filters.time_to is not None:
        query = query.where(Alert.window_start < filters.time_to)
    if after is not None:
        at, last_id = after
        query = query.where(or_(Alert.window_start < at, and_(Alert.window_start == at, Alert.id < last_id)))
    query = _scoped(query, units).order_by(Alert.window_start.desc(), Alert.id.desc()).limit(limit)
    return list(session.scalars(query))


def get_alert(session: Session, alert_id: int, *, units: Select[tuple[str]] | None = None) -> Alert:
    alert = session.scalars(_scoped(select(Alert).where(Alert.id == alert_id), units)).first()
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    return alert
