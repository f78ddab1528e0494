"""Reading breakers, checking a subject, and resetting a breaker (trips happen in app.alerts.evaluate)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from app.alerts.models import Alert
from app.breakers.models import Breaker, BreakerChange
from app.breakers.state import effective_state, locked_breaker, record_change, stops_sql
from app.errors import Conflict, Forbidden, NotFound
from app.rules.spec import RuleSet

DEFAULT_PROBATION = timedelta(hours=24)  # for a breaker whose rule is no longer in force


def _state_is(state: str, now: datetime) -> object:
    """SQL for a breaker's effective state (half_open past probation, a suspension past its days: closed)."""
    if state == "closed":
        return or_(
            Breaker.state == "closed",
            and_(Breaker.state == "half_open", Breaker.probation_until <= now),
            and_(Breaker.state == "open", Breaker.suspended_until <= now),
        )
    if state == "half_open":
        return and_(Breaker.state == "half_open", Breaker.probation_until > now)
    return stops_sql(now)


def _scoped(query: Select[Breaker], units: Select[tuple[str]] | None) -> Select[Breaker]:
    # A scoped inspector sees the breakers whose alert is in their units.
    if units is None:
        return query
    return query.where(Breaker.alert_id.in_(select(Alert.id).where(Alert.unit.in_(units))))


def list_breakers(
    session: Session,
    *,
    now: datetime,
    state: str | None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    limit: int,
    after: int | None,
    units: Select[tuple[str]] | None = None,
) -> list[Breaker]:
    """Breakers by id, newest first."""
    query = select(Breaker)
    if state is not None:
        query = query.where(_state_is(state, now))  # type: ignore[arg-type]
    if subject_type is not None:
        query = query.where(Breaker.subject_type == subject_type)
    if subject_id is not None:
        query = query.where(Breaker.subject_id == subject_id)
    if after is not None:
        query = query.where(Breaker.id < after)
    query = _scoped(query, units).order_by(Breaker.id.desc()).limit(limit)
    return list(session.scalars(query))


def get_breaker(session: Session, breaker_id: int, *, units: Select[tuple[str]] | None = None) -> Breaker:
    breaker = session.scalars(_scoped(select(Breaker).where(Breaker.id == breaker_id), units)).first()
    if breaker is None:
        raise NotFound(f"no breaker with id {breaker_id}")
    return breaker


def for_alert(session: Session, alert_id: int) -> list[Breaker]:
    """The breakers an alert opened (a trip, and a suspension it decided), oldest first."""
    return list(session.scalars(select(Breaker).where(Breaker.alert_id == alert_id).order_by(Breaker.id)))


def history(session: Session, breaker_id: int) -> list[BreakerChange]:
    return list(
        session.scalars(select(BreakerChange).where(BreakerChange.breaker_id == breaker_id).order_by(BreakerChange.id))
    )


def check(
    session: Session,
    *,
    subject_type: str,
    subject_id: str,
    domain: str | None,
    now: datetime,
    units: Select[tuple[str]] | None = None,
) -> list[Breaker]:
    """The breakers that stop ``subject`` now (in ``domain``, or in any domain when it is None)."""
    query = select(Breaker).where(
        Breaker.subject_type == subject_type, Breaker.subject_id == subject_id, stops_sql(now)
    )
    if domain is not None:
        query = query.where(Breaker.domains.contains(f",{domain},"))
    return list(session.scalars(_scoped(query, units).order_by(Breaker.id)))


def reset(
    session: Session,
    breaker_id: int,
    *,
    rules: RuleSet,
    actor: str,
    reason: str,
    now: datetime,
    may_lift_suspension: bool,
    units: Select[tuple[str]] | None = None,
) -> Breaker:
    """Put an open breaker on probation (half_open) for its rule's ``probation``; 409 unless it is open.

    A suspension (停业整改) is lifted, not put on probation, and only by an admin (403 otherwise)."""
    breaker = session.scalars(
        _scoped(select(Breaker).where(Breaker.id == breaker_id), units)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if breaker is None:
        raise NotFound(f"no breaker with id {breaker_id}")
    state = effective_state(breaker, now)
    if state != "open":
        raise Conflict(f"only an open breaker can be reset; this one is {state}", state=state)
    if breaker.kind == "suspension":
        if not may_lift_suspension:
            raise Forbidden("a suspension (停业整改) ordered by an accountability outcome is lifted early by an admin")
        breaker.state = "closed"
        breaker.reset_at = now
        breaker.version += 1
        unit = _unit(session, breaker)
        record_change(session, breaker, action="lift", before="open", actor=actor, reason=reason, now=now, unit=unit)
        return breaker
    rule = rules.get(breaker.rule_id)
    breaker.state = "half_open"
    breaker.reset_at = now
    breaker.probation_until = now + (rule.probation if rule is not None else DEFAULT_PROBATION)
    breaker.version += 1
    unit = _unit(session, breaker)
    record_change(session, breaker, action="reset", before="open", actor=actor, reason=reason, now=now, unit=unit)
    return breaker


def _unit(session: Session, breaker: Breaker) -> str | None:
    """The org unit of the breaker's alert (who may see its audit entries)."""
    return session.scalar(select(Alert.unit).where(Alert.id == breaker.alert_id))


def suspend(session: Session, alert: Alert, *, days: int, actor: str, reason: str, now: datetime) -> Breaker:
    """Stop a business unit's business for ``days`` (停业整改): a suspension breaker on the alert's subject for
    the alert's domains, opened (or extended) now."""
    breaker = locked_breaker(
        session,
        kind="suspension",
        rule_id=alert.rule_id,
        subject_type=alert.subject_type,
        subject_id=alert.subject_id,
        domains=alert.domains,
        alert_id=alert.id,
        now=now,
    )
    before = effective_state(breaker, now)
    breaker.state = "open"
    breaker.alert_id = alert.id
    breaker.opened_at = now
    breaker.domains = alert.domains
    breaker.reset_at = None
    breaker.probation_until = None
    breaker.suspended_until = now + timedelta(days=days)
    breaker.version += 1
    why = f"{days} days: {reason}"
    record_change(session, breaker, action="suspend", before=before, actor=actor, reason=why, now=now, unit=alert.unit)
    return breaker
