"""Reading alerts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from app.alerts import workflow
from app.alerts.models import Alert, AlertTransition
from app.alerts.schemas import Outcome, Stage, TransitionIn
from app.audit import service as audit
from app.breakers.service import suspend
from app.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from app.units.models import Unit
from app.units.service import subtree
from app.webhooks import outbox

_Query = TypeVar("_Query", Select[Alert], Select[str, int])


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
    exempted: bool | None = False  # None: exempted or not
    time_from: datetime | None = None
    time_to: datetime | None = None


def _scoped(query: Select[Alert], units: Select[tuple[str]] | None) -> Select[Alert]:
    return query if units is None else query.where(Alert.unit.in_(units))


def overdue_sql(now: datetime) -> ColumnElement[bool]:
    """In supervision past its due time (提级督办超期)."""
    return and_(Alert.stage == "supervision", Alert.due_at.is_not(None), Alert.due_at < now)


def is_overdue(alert: Alert, now: datetime) -> bool:
    return alert.stage == "supervision" and alert.due_at is not None and alert.due_at < now


def list_alerts(
    session: Session,
    *,
    now: datetime,
    filters: AlertFilter,
    limit: int,
    after: tuple[datetime, int] | None = None,
    units: Select[tuple[str]] | None = None,
) -> list[Alert]:
    """Newest window first, then newest alert: (window_start, id) descending, a stable keyset order."""
    query = _filtered(select(Alert), now=now, filters=filters)
    if after is not None:
        at, last_id = after
        query = query.where(or_(Alert.window_start < at, and_(Alert.window_start == at, Alert.id < last_id)))
    query = _scoped(query, units).order_by(Alert.window_start.desc(), Alert.id.desc()).limit(limit)
    return list(session.scalars(query))


def count_by_stage(
    session: Session, *, now: datetime, filters: AlertFilter, units: Select[tuple[str]] | None = None
) -> dict[str, int]:
    """How many alerts match the filters (all but the stage), per stage."""
    query = select(Alert.stage, func.count()).select_from(Alert)
    query = _filtered(query, now=now, filters=replace(filters, stage=None))
    if units is not None:
        query = query.where(Alert.unit.in_(units))
    query = query.group_by(Alert.stage)
    counts = dict.fromkeys((stage.value for stage in Stage), 0)
    for stage, n in session.execute(query):
        counts[stage] = n
    return counts


def _filtered(query: _Query, *, now: datetime, filters: AlertFilter) -> _Query:
    for column, value in (
        (Alert.stage, filters.stage),
        (Alert.rule_id, filters.rule),
        (Alert.subject_id, filters.subject),
        (Alert.severity, filters.severity),
        (Alert.cleared, filters.cleared),
        (Alert.exempted, filters.exempted),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.domain is not None:
        query = query.where(Alert.domains.contains(f",{filters.domain},"))
    if filters.unit is not None:
        query = query.where(Alert.unit.in_(subtree(filters.unit, name="filter_tree")))
    if filters.overdue is not None:
        query = query.where(overdue_sql(now) if filters.overdue else ~overdue_sql(now))
    if filters.time_from is not None:
        query = query.where(Alert.window_start >= filters.time_from)
    if filters.time_to is not None:
        query = query.where(Alert.window_start < filters.time_to)
    return query


def get_alert(session: Session, alert_id: int, *, units: Select[tuple[str]] | None = None) -> Alert:
    alert = session.scalars(_scoped(select(Alert).where(Alert.id == alert_id), units)).first()
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    return alert


def history(session: Session, alert_id: int) -> list[AlertTransition]:
    query = select(AlertTransition).where(AlertTransition.alert_id == alert_id).order_by(AlertTransition.id)
    return list(session.scalars(query))


def transition(
    session: Session,
    alert_id: int,
    move: TransitionIn,
    *,
    actor: str,
    if_match: str | None,
    now: datetime,
    units: Select[tuple[str]] | None = None,
) -> Alert:
    """Move an alert to another stage, or refuse: 404 (unknown or out of scope), 412 (stale If-Match),
    409 (not a move the workflow allows; lists the allowed targets), 422 (a field the target needs)."""
    query = _scoped(select(Alert).where(Alert.id == alert_id), units).with_for_update()
    alert = session.scalars(query.execution_options(populate_existing=True)).first()
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    if if_match is not None and if_match.strip() != "*" and etag(alert) not in [t.strip() for t in if_match.split(",")]:
        raise PreconditionFailed(
            f"the alert has changed (it is now version {alert.version}); read it again", etag=etag(alert)
        )
    current = Stage(alert.stage)
    allowed = workflow.allowed_targets(current)
    if move.to not in allowed:
        raise Conflict(
            f"an alert in {current.value} cannot move to {move.to.value}",
            allowed=[stage.value for stage in allowed],
        )
    given = move.given()
    problems = workflow.problems(move.to, given, subject_type=alert.subject_type, now=now)
    if "assignee_unit" in given and session.get(Unit, given["assignee_unit"]) is None:
        problems.append((("assignee_unit",), f"no org unit {given['assignee_unit']!r}"))
    if problems:
        raise InvalidInput([(("body", *loc), msg) for loc, msg in problems])
    details = move.model_dump(mode="json", exclude={"to", "reason"}, exclude_none=True)
    session.add(
        AlertTransition(
            alert_id=alert.id,
            from_stage=current.value,
            to_stage=move.to.value,
            actor=actor,
            reason=move.reason,
            details=details,
            at=now,
        )
    )
    alert.stage = move.to.value
    alert.stage_entered_at = now
    if move.to is Stage.SUPERVISION:
        alert.assignee_unit, alert.due_at = given["assignee_unit"], given["due_at"]
    alert.version += 1
    alert.updated_at = now
    audit.record(
        session,
        actor=actor,
        action=audit.AuditAction.ALERT_MOVED,
        object_type="alert",
        object_id=str(alert.id),
        data={"from": current.value, "to": move.to.value, "reason": move.reason, **details},
        unit=alert.unit,
        at=now,
    )
    if not alert.exempted:
        outbox.notify(session, "alert.transitioned", "alert", alert.id, alert.unit)
    if given.get("outcome") == Outcome.SUSPENSION:
        suspend(session, alert, days=given["suspension_days"], actor=actor, reason=move.reason, now=now)
    session.flush()
    return alert


def etag(alert: Alert) -> str:
    return f'"{alert.version}"'
