"""A breaker's state, read and changed in one place: what stops business now, and every trip, reset,
suspension and lift kept with who, when, why and which alert."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.breakers.models import Breaker, BreakerChange
from app.db import insert_ignoring
from app.rules.engine import subject_of
from app.rules.spec import GroupBy
from app.webhooks import outbox

_IDENTITY = ("kind", "rule_id", "subject_type", "subject_id")
_PAST = {"trip": "tripped", "reset": "reset", "suspend": "suspended", "lift": "lifted"}
# What webhooks are told: a suspension opens a breaker too; lifting one (by the reset endpoint) resets it.
_TOLD = {"trip": "breaker.opened", "suspend": "breaker.opened", "reset": "breaker.reset", "lift": "breaker.reset"}


def effective_state(breaker: Breaker, now: datetime) -> str:
    """``half_open`` becomes ``closed`` once probation is over; a suspension once its days are over."""
    if breaker.state == "half_open" and breaker.probation_until is not None and breaker.probation_until <= now:
        return "closed"
    if breaker.state == "open" and breaker.suspended_until is not None and breaker.suspended_until <= now:
        return "closed"
    return breaker.state


def stops_sql(now: datetime) -> ColumnElement[bool]:
    """Breakers that stop business now: open, and for a suspension, not past its days."""
    return and_(Breaker.state == "open", or_(Breaker.suspended_until.is_(None), Breaker.suspended_until > now))


def locked_breaker(
    session: Session,
    *,
    kind: str,
    rule_id: str,
    subject_type: str,
    subject_id: str,
    domains: str,
    alert_id: int,
    now: datetime,
) -> Breaker:
    """The (kind, rule, subject) breaker, created closed if there is none, locked until the transaction ends."""
    session.execute(
        insert_ignoring(session, Breaker.__table__, conflict=_IDENTITY),  # type: ignore[arg-type]
        {
            "kind": kind,
            "rule_id": rule_id,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "domains": domains,
            "state": "closed",
            "alert_id": alert_id,
            "opened_at": now,
            "version": 1,
        },
    )
    query = select(Breaker).where(
        Breaker.kind == kind,
        Breaker.rule_id == rule_id,
        Breaker.subject_type == subject_type,
        Breaker.subject_id == subject_id,
    )
    return session.scalars(query.with_for_update().execution_options(populate_existing=True)).one()


def record_change(
    session: Session,
    breaker: Breaker,
    *,
    action: str,
    before: str,
    actor: str,
    reason: str,
    now: datetime,
    unit: str | None,
) -> None:
    """Keep a trip, reset, suspension or lift: from which state to the breaker's state now, who, why; in the
    breaker's history and in the audit trail (``unit``: the org unit of the breaker's alert)."""
    audit.record(
        session,
        actor=actor,
        action=f"breaker.{_PAST[action]}",
        object_type="breaker",
        object_id=str(breaker.id),
        data={
            "kind": breaker.kind,
            "rule_id": breaker.rule_id,
            "subject_type": breaker.subject_type,
            "subject_id": breaker.subject_id,
            "from": before,
            "to": breaker.state,
            "reason": reason,
            "alert_id": breaker.alert_id,
        },
        unit=unit,
        at=now,
    )
    outbox.notify(session, _TOLD[action], "breaker", breaker.id, unit)
    session.add(
        BreakerChange(
            breaker_id=breaker.id,
            action=action,
            from_state=before,
            to_state=breaker.state,
            actor=actor,
            reason=reason,
            alert_id=breaker.alert_id,
            at=now,
        )
    )
    session.flush()


_OPEN_FOR = (
    select(Breaker)
    .where(
        Breaker.state == "open",
        Breaker.subject_id.in_(bindparam("subjects", expanding=True)),
        or_(Breaker.suspended_until.is_(None), Breaker.suspended_until > bindparam("now")),
    )
    .order_by(Breaker.id)
)


def open_breakers(session: Session, subjects: Iterable[str], now: datetime) -> list[Breaker]:
    """Breakers stopping business now whose subject id is one of ``subjects`` (callers match the subject
    type and domain)."""
    wanted = sorted(set(subjects))
    if not wanted:
        return []
    return list(session.scalars(_OPEN_FOR, {"subjects": wanted, "now": now}))


def covers(breaker: Breaker, event: Mapping[str, Any]) -> bool:
    """Whether ``breaker`` stops ``event``: its subject is the event's under the breaker's subject type,
    and the event's domain is one the breaker's rule watches."""
    if f",{event['domain']}," not in breaker.domains:
        return False
    return subject_of(GroupBy(breaker.subject_type), event) == breaker.subject_id


def event_subjects(event: Mapping[str, Any]) -> set[str]:
    """Every id the event could count for under some group_by (a superset is fine: `covers` decides)."""
    operator = event["operator"]
    business_unit = event.get("business_unit")
    found = {operator["id"], operator["unit"], operator.get("responsible_officer"), event.get("agent_id")}
    if business_unit is not None:
        found.add(business_unit["id"])
    found.discard(None)
    return found
