"""Exemptions (报备): filed by a business system, decided by someone else (four eyes), revocable.

Coverage. An approved exemption covers an alert when it names the alert's rule (or, with no rule, one of
the rule's domains), the alert's subject (type and id), and its window overlaps the alert's window
(``from < window_end`` and ``window_start < to``). When several cover one alert, the lowest id is the one
the alert names, so every path (inline, scan, approval, revocation) marks the same alert the same way.

Concurrency. Evaluation reads the exemptions of the subjects it touches with ``FOR SHARE`` (PostgreSQL),
requested ones included, and a decision or revocation updates the exemption's row first: the two
serialise on that row, so an alert raised by a concurrent request is either evaluated with the new status
or committed before the decision marks the alerts it covers. SQLite serialises writers anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, or_, select
from sqlalchemy.orm import Session

from app.alerts.models import Alert
from app.audit import service as audit
from app.errors import Conflict, InvalidInput, NotFound
from app.events.models import Event
from app.exemptions.models import Exemption
from app.rules.spec import AnyRule, GroupBy, RuleSet
from app.webhooks import outbox

MAX_SPAN = timedelta(days=31)
REQUESTED, APPROVED, REJECTED, REVOKED = "requested", "approved", "rejected", "revoked"


class ExemptionAction:
    REQUESTED = "exemption.requested"
    DECIDED = "exemption.decided"
    REVOKED = "exemption.revoked"
    ALERT_EXEMPTED = "alert.exempted"
    ALERT_UNEXEMPTED = "alert.unexempted"


@dataclass(frozen=True)
class Cover:
    """What coverage needs of an exemption (a plain copy, so evaluation keeps no ORM rows)."""

    id: int
    rule_id: str | None
    domains: frozenset[str]
    subject_type: str
    subject_id: str
    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, row: Exemption) -> Cover:
        return cls(
            row.id,
            row.rule_id,
            frozenset(row.domains.strip(",").split(",")),
            row.subject_type,
            row.subject_id,
            row.starts_at,
            row.ends_at,
        )

    def covers(self, rule: AnyRule, subject: str, window_start: datetime, window_end: datetime) -> bool:
        if self.subject_type != rule.group_by.value or self.subject_id != subject:
            return False
        if not (self.starts_at < window_end and window_start < self.ends_at):
            return False
        if self.rule_id is not None:
            return self.rule_id == rule.id
        return any(domain.value in self.domains for domain in rule.domains)


def covering(
    covers: Iterable[Cover], rule: AnyRule, subject: str, window_start: datetime, window_end: datetime
) -> int | None:
    """The id of the approved exemption that covers an alert (the lowest of several), or None."""
    found = [c.id for c in covers if c.covers(rule, subject, window_start, window_end)]
    return min(found) if found else None


def approved_for(session: Session, subjects: Iterable[str]) -> list[Cover]:
    """The approved exemptions of these subjects; their rows (requested ones too) are share-locked on
    PostgreSQL until the transaction ends, so a decision on one waits for this evaluation (and back)."""
    wanted = sorted(set(subjects))
    if not wanted:
        return []
    query = select(Exemption).where(Exemption.subject_id.in_(wanted), Exemption.status.in_([REQUESTED, APPROVED]))
    if session.get_bind().dialect.name == "postgresql":
        query = query.order_by(Exemption.id).with_for_update(read=True)
    return [Cover.of(row) for row in session.scalars(query) if row.status == APPROVED]


def covers_of(session: Session, subjects: Iterable[str]) -> list[Cover]:
    """The approved exemptions of these subjects, read without locks (a backtest writes nothing)."""
    wanted = sorted(set(subjects))
    if not wanted:
        return []
    query = select(Exemption).where(Exemption.subject_id.in_(wanted), Exemption.status == APPROVED)
    return [Cover.of(row) for row in session.scalars(query)]


# --- scope ---------------------------------------------------------------------------------------------------


def subject_events(subject_type: str, subject_id: Any) -> list[ColumnElement[bool]]:
    """The conditions on events that count for a subject of this type."""
    if subject_type == GroupBy.OPERATOR.value:
        return [Event.operator_id == subject_id]
    if subject_type == GroupBy.RESPONSIBLE_OFFICER.value:
        return [or_(Event.responsible_officer == subject_id, Event.operator_id == subject_id)]
    if subject_type == GroupBy.BUSINESS_UNIT.value:
        return [Event.business_unit_id == subject_id]
    if subject_type == GroupBy.AGENT.value:
        return [Event.agent_id == subject_id]
    return [Event.operator_unit == subject_id]


def _in_units(units: Select[tuple[str]]) -> ColumnElement[bool]:
    """An exemption whose subject has events in these units (a scoped inspector's jurisdiction)."""
    conditions = [
        and_(
            Exemption.subject_type == subject_type.value,
            exists().where(*subject_events(subject_type.value, Exemption.subject_id), Event.operator_unit.in_(units)),
        )
        for subject_type in GroupBy
    ]
    return or_(*conditions)


@dataclass(frozen=True)
class Scope:
    """What a key may see: a scoped inspector its units' subjects, a source key what it filed."""

    units: Select[tuple[str]] | None = None
    requester: str | None = None


def _visible(query: Select[Exemption], scope: Scope) -> Select[Exemption]:
    if scope.units is not None:
        query = query.where(_in_units(scope.units))
    if scope.requester is not None:
        query = query.where(Exemption.requested_by == scope.requester)
    return query


def get(
    session: Session,
    exemption_id: int,
    *,
    scope: Scope,
    lock: bool = False,
) -> Exemption:
    """One exemption the caller may see (404 otherwise: ids do not leak)."""
    query = _visible(select(Exemption).where(Exemption.id == exemption_id), scope)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    found = session.scalars(query).first()
    if found is None:
        raise NotFound(f"no exemption with id {exemption_id}")
    return found


def list_exemptions(
    session: Session,
    *,
    status: str | None,
    subject: str | None,
    active: bool | None,
    now: datetime,
    limit: int,
    after: int | None,
    scope: Scope,
) -> list[Exemption]:
    """Newest first (by id), filtered, paged by id."""
    query = _visible(select(Exemption), scope)
    if status is not None:
        query = query.where(Exemption.status == status)
    if subject is not None:
        query = query.where(Exemption.subject_id == subject)
    if active is not None:
        is_active = and_(Exemption.status == APPROVED, Exemption.starts_at <= now, now < Exemption.ends_at)
        query = query.where(is_active if active else ~is_active)
    if after is not None:
        query = query.where(Exemption.id < after)
    return list(session.scalars(query.order_by(Exemption.id.desc()).limit(limit)))


def is_active(exemption: Exemption, now: datetime) -> bool:
    return exemption.status == APPROVED and exemption.starts_at <= now < exemption.ends_at


# --- the life cycle ----------------------------------------------------------------------------------------


def _audit(session: Session, exemption: Exemption, action: str, actor: str, now: datetime, **data: object) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        object_type="exemption",
        object_id=str(exemption.id),
        data={
            "rule_id": exemption.rule_id,
            "domains": exemption.domains.strip(",").split(","),
            "subject_type": exemption.subject_type,
            "subject_id": exemption.subject_id,
            "from": exemption.starts_at,
            "to": exemption.ends_at,
            "status": exemption.status,
            "requested_by": exemption.requested_by,
            **data,
        },
        at=now,
    )
    outbox.notify(session, action, "exemption", exemption.id)


def request(
    session: Session,
    rules: RuleSet,
    *,
    rule_id: str | None,
    domains: Sequence[str] | None,
    subject_type: str,
    subject_id: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    reference: str | None,
    actor: str,
    now: datetime,
) -> Exemption:
    """File a request (status ``requested``); 422 names what is wrong with it."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if ends_at <= starts_at:
        problems.append((("body", "to"), "must be after `from`"))
    elif ends_at - starts_at > MAX_SPAN:
        problems.append((("body", "to"), f"at most {MAX_SPAN.days} days after `from`"))
    if rule_id is not None:
        rule = rules.get(rule_id)
        if rule is None:
            problems.append((("body", "rule_id"), f"no rule with id {rule_id!r} is in force"))
        else:
            if rule.group_by.value != subject_type:
                message = f"the rule {rule.id} groups by {rule.group_by.value}, not {subject_type}"
                problems.append((("body", "subject_type"), message))
            if not domains:
                domains = [domain.value for domain in rule.domains]
    elif not domains:
        problems.append((("body", "domains"), "required when rule_id is null (the exemption covers their rules)"))
    if problems:
        raise InvalidInput(problems)
    assert domains
    exemption = Exemption(
        rule_id=rule_id,
        domains="," + ",".join(sorted(set(domains))) + ",",
        subject_type=subject_type,
        subject_id=subject_id,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        reference=reference,
        status=REQUESTED,
        requested_by=actor,
        filed_at=now,
        version=1,
    )
    session.add(exemption)
    session.flush()
    _audit(session, exemption, ExemptionAction.REQUESTED, actor, now, reason=reason, reference=reference)
    return exemption


def decide(
    session: Session,
    rules: RuleSet,
    exemption: Exemption,
    *,
    approve: bool,
    reason: str,
    actor: str,
    now: datetime,
) -> Exemption:
    """Approve or reject a requested exemption (not by its requester: four eyes); approval marks the alerts it
    covers at once (their stage stays; breakers already open stay open)."""
    if exemption.status != REQUESTED:
        raise Conflict(f"the exemption is {exemption.status}; only a requested one can be decided")
    if exemption.requested_by == actor:
        raise Conflict(f"four eyes: {actor!r} filed this exemption and cannot decide it")
    exemption.status = APPROVED if approve else REJECTED
    exemption.decided_by, exemption.decided_at, exemption.decision_reason = actor, now, reason
    exemption.version += 1
    session.flush()
    _audit(session, exemption, ExemptionAction.DECIDED, actor, now, approve=approve, reason=reason)
    if approve:
        _mark(session, rules, exemption, actor=actor, now=now)
    return exemption


def revoke(
    session: Session, rules: RuleSet, exemption: Exemption, *, reason: str, actor: str, now: datetime
) -> Exemption:
    """Revoke a requested or approved exemption; the alerts it covered count again at once (and trip)."""
    if exemption.status not in (REQUESTED, APPROVED):
        raise Conflict(f"the exemption is {exemption.status}; only a requested or approved one can be revoked")
    was_approved = exemption.status == APPROVED
    exemption.status = REVOKED
    exemption.revoked_by, exemption.revoked_at, exemption.revoke_reason = actor, now, reason
    exemption.version += 1
    session.flush()
    _audit(session, exemption, ExemptionAction.REVOKED, actor, now, reason=reason)
    if was_approved:
        _unmark(session, rules, exemption, actor=actor, now=now)
    return exemption


def _candidates(session: Session, exemption: Exemption) -> list[Alert]:
    """The alerts of the exemption's subject whose windows overlap it (rule matching is done in Python)."""
    query = (
        select(Alert)
        .where(
            Alert.subject_type == exemption.subject_type,
            Alert.subject_id == exemption.subject_id,
            Alert.window_end > exemption.starts_at,
            Alert.window_start < exemption.ends_at,
        )
        .order_by(Alert.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(query))


def _covers_alert(cover: Cover, rule: AnyRule | None, alert: Alert) -> bool:
    if rule is not None:
        return cover.covers(rule, alert.subject_id, alert.window_start, alert.window_end)
    # A rule no longer in force: the alert's own record of its rule and domains decides.
    if cover.subject_type != alert.subject_type or cover.subject_id != alert.subject_id:
        return False
    if cover.rule_id is not None:
        return cover.rule_id == alert.rule_id
    return any(f",{domain}," in alert.domains for domain in cover.domains)


def _set(session: Session, alert: Alert, exemption_id: int | None, *, actor: str, now: datetime) -> None:
    if alert.exemption_id == exemption_id:
        return
    action = ExemptionAction.ALERT_EXEMPTED if exemption_id is not None else ExemptionAction.ALERT_UNEXEMPTED
    previous = alert.exemption_id
    alert.exempted, alert.exemption_id = exemption_id is not None, exemption_id
    alert.version += 1
    alert.updated_at = now
    audit.record(
        session,
        actor=actor,
        action=action,
        object_type="alert",
        object_id=str(alert.id),
        data={"exemption_id": exemption_id, "previous_exemption_id": previous},
        unit=alert.unit,
        at=now,
    )
    if exemption_id is None:  # it counts again: told as an update (an exempted alert tells nothing)
        outbox.notify(session, "alert.updated", "alert", alert.id, alert.unit)


def _mark(session: Session, rules: RuleSet, exemption: Exemption, *, actor: str, now: datetime) -> None:
    cover = Cover.of(exemption)
    for alert in _candidates(session, exemption):
        if not _covers_alert(cover, rules.get(alert.rule_id), alert):
            continue
        if alert.exemption_id is None or alert.exemption_id > exemption.id:
            _set(session, alert, exemption.id, actor=actor, now=now)
    session.flush()


def _unmark(session: Session, rules: RuleSet, exemption: Exemption, *, actor: str, now: datetime) -> None:
    from app.alerts.evaluate import trip  # evaluation imports this module

    others = [c for c in approved_for(session, [exemption.subject_id]) if c.id != exemption.id]
    for alert in _candidates(session, exemption):
        if alert.exemption_id != exemption.id:
            continue
        rule = rules.get(alert.rule_id)
        still = sorted(c.id for c in others if _covers_alert(c, rule, alert))
        _set(session, alert, still[0] if still else None, actor=actor, now=now)
        if not alert.exempted and alert.tripped and not alert.cleared and rule is not None:
            trip(session, rule, alert, actor=actor, now=now)
    session.flush()
