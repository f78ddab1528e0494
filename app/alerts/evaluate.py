"""Bringing alerts and breakers in line with the stored events, for given (rule, subject, window) keys.

This is the one place alerts are written, whether an event was just stored (inline, in the ingest
transaction) or a scan found a window to fix. For each key it measures the window with SQL
(:mod:`app.rules.sql`, which agrees with the reference evaluator), then raises, updates, clears or
un-clears the key's alert, and trips the subject's breaker when the value reaches ``trip_at``.

Concurrency. Two transactions that each add an event to one window must not both measure it without
the other's event (each would see a value below the threshold and no alert would be raised), nor both
raise its alert. So a transaction takes a lock per key before measuring, in one global order (no
deadlock), and holds it until it commits: the second one measures after the first committed and sees
both events. On PostgreSQL the locks are transaction-level advisory locks on a 64-bit hash of the key
(a collision only serialises two unrelated keys); each statement of a READ COMMITTED transaction sees
what committed before it started, so the measurement taken after the lock is complete. On SQLite
writers are already serialised (``BEGIN IMMEDIATE``). A ``spike`` window's value also depends on the
windows before it, so an event locks and re-measures the windows that use its window as baseline.

Breakers trip when an alert's value reaches ``trip_at`` because of new evidence (the alert is new, its
hits changed, or it has just become tripped), not when a scan re-measures an unchanged window: a reset
breaker is re-opened by new business, not by history it has already answered for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import String, and_, column, select, text
from sqlalchemy.orm import Session

from app.alerts.models import Alert
from app.audit import service as audit
from app.audit.service import AuditAction
from app.breakers.state import effective_state, locked_breaker, record_change
from app.db import UTCDateTime
from app.rules import sql
from app.rules.engine import subject_of
from app.rules.spec import AnyRule, GroupBy, RuleSet, SpikeRule
from app.rules.windows import Window, WindowGrid

# (rule id, subject, window start)
Key = tuple[str, str, datetime]

_LOCK = text(
    "SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS t(k, i) ORDER BY i"
)


# The stored alerts of a set of keys: one prepared statement whatever the number of keys (arrays on
# PostgreSQL, one JSON text on SQLite), instead of three parameters a key.
_KEY_ROWS = {
    "postgresql": text(
        "SELECT * FROM unnest(CAST(:rules AS text[]), CAST(:subjects AS text[]), CAST(:starts AS timestamptz[]))"
        " AS k(rule_id, subject_id, window_start)"
    ),
    "sqlite": text(
        "SELECT json_extract(value, '$[0]') AS rule_id, json_extract(value, '$[1]') AS subject_id,"
        " json_extract(value, '$[2]') AS window_start FROM json_each(:keys)"
    ),
}
_ALERTS_OF = {
    dialect: select(Alert).join(
        k := rows.columns(
            column("rule_id", String), column("subject_id", String), column("window_start", UTCDateTime)
        ).subquery("k"),
        and_(Alert.rule_id == k.c.rule_id, Alert.subject_id == k.c.subject_id, Alert.window_start == k.c.window_start),
    )
    for dialect, rows in _KEY_ROWS.items()
}


def _alert_keys(dialect: str, keys: Iterable[Key]) -> dict[str, Any]:
    listed = list(keys)
    if dialect == "postgresql":
        return {
            "rules": [rule_id for rule_id, _, _ in listed],
            "subjects": [subject for _, subject, _ in listed],
            "starts": [start for _, _, start in listed],
        }
    return {"keys": json.dumps([[r, s, sql.sqlite_time(w)] for r, s, w in listed], ensure_ascii=False)}


def domains_text(rule: AnyRule) -> str:
    """A rule's domains as ``,a,b,`` (so ``LIKE '%,a,%'`` finds one on every database)."""
    return "," + ",".join(str(domain.value) for domain in rule.domains) + ","


def _lock_id(key: Key) -> int:
    rule_id, subject, start = key
    digest = hashlib.blake2b(f"{rule_id}\x00{subject}\x00{start.isoformat()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class Applied:
    """What bringing a set of keys in line changed."""

    raised: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    cleared: list[int] = field(default_factory=list)
    tripped: list[int] = field(default_factory=list)  # breaker ids opened
    alert_of: dict[Key, int] = field(default_factory=dict)  # alerts written (raised, updated or cleared)
    changes: list[tuple[str, Alert]] = field(default_factory=list)  # (audit action, alert), to record

    def add(self, other: Applied) -> None:
        self.raised += other.raised
        self.updated += other.updated
        self.cleared += other.cleared
        self.tripped += other.tripped
        self.alert_of.update(other.alert_of)
        self.changes += other.changes


class Evaluator:
    """Applies one rule set in one zone. Cheap to build; holds no database state."""

    def __init__(self, rules: RuleSet, zone: tzinfo) -> None:
        self.rules = rules
        self.zone = zone
        self._grids: dict[timedelta, WindowGrid] = {}

    def grid(self, rule: AnyRule) -> WindowGrid:
        """The windows of the rule's length met so far (one evaluator serves one request)."""
        grid = self._grids.get(rule.window)
        if grid is None:
            grid = self._grids[rule.window] = WindowGrid(rule.window, self.zone)
        return grid

    # --- which keys an event touches ------------------------------------------------------------------------

    def touched(self, event: Mapping[str, Any], at: datetime) -> dict[Key, Window]:
        """The keys whose value an event (contract JSON shape, ``occurred_at`` ``at``) may change."""
        keys: dict[Key, Window] = {}
        for rule in self.rules.for_domain(event["domain"]):
            if not rule.filter.matches(event):
                continue
            subject = subject_of(rule.group_by, event)
            if subject is None:
                continue
            grid = self.grid(rule)
            window = grid.window(at)
            keys[(rule.id, subject, window.start)] = window
            if isinstance(rule, SpikeRule):
                for later in grid.after(window, rule.baseline_windows):
                    keys[(rule.id, subject, later.start)] = later
        return keys

    # --- bringing keys in line ----------------------------------------------------------------------------------

    def apply(self, session: Session, keys: Mapping[Key, Window], *, actor: str, now: datetime) -> Applied:
        """Measure every key (after locking it) and write its alert and breaker as the value says."""
        applied = Applied()
        if not keys:
            return applied
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(_LOCK, {"keys": sorted(_lock_id(key) for key in keys)})
        by_rule: dict[str, dict[Key, Window]] = {}
        for key, window in keys.items():
            by_rule.setdefault(key[0], {})[key] = window
        existing = {
            (alert.rule_id, alert.subject_id, alert.window_start): alert
            for alert in session.scalars(
                _ALERTS_OF[connection.dialect.name], _alert_keys(connection.dialect.name, keys)
            )
        }
        # Every rule's windows (and spike baselines) measured in one statement.
        in_force = [rule for rule_id in sorted(by_rule) if (rule := self.rules.get(rule_id)) is not None]
        baselines: dict[Key, list[Window]] = {}
        wanted: dict[AnyRule, dict[tuple[str, datetime], tuple[str, Window]]] = {}
        for rule in in_force:  # a rule no longer in force is skipped: its alerts stay as they are
            needed = wanted.setdefault(rule, {})
            for key, window in by_rule[rule.id].items():
                needed[(key[1], window.start)] = (key[1], window)
                if isinstance(rule, SpikeRule):
                    baselines[key] = base = self.grid(rule).before(window, rule.baseline_windows)
                    for w in base:
                        needed[(key[1], w.start)] = (key[1], w)
        measured = sql.measure_many(connection, self.zone, {rule: needed.values() for rule, needed in wanted.items()})
        trips: list[tuple[AnyRule, Alert]] = []
        for rule in in_force:
            trips += self._apply_rule(
                session, rule, by_rule[rule.id], measured[rule.id], baselines, existing, applied, now=now
            )
        _audit(session, applied.changes, actor=actor, now=now)
        applied.changes = []
        for rule, alert in sorted(trips, key=lambda t: (t[0].id, t[1].subject_type, t[1].subject_id)):
            breaker_id = trip(session, rule, alert, actor=actor, now=now)
            if breaker_id is not None:
                applied.tripped.append(breaker_id)
        return applied

    def _apply_rule(
        self,
        session: Session,
        rule: AnyRule,
        keys: Mapping[Key, Window],
        aggregates: Mapping[sql.Key, sql.Aggregate],
        baselines: Mapping[Key, list[Window]],
        existing: Mapping[Key, Alert],
        applied: Applied,
        *,
        now: datetime,
    ) -> list[tuple[AnyRule, Alert]]:
        trips: list[tuple[AnyRule, Alert]] = []
        for key in sorted(keys):
            _, subject, start = key
            window = keys[key]
            value = sql.value_of(rule, (subject, start), aggregates, baselines.get(key, ()))
            found = aggregates.get((subject, start))
            hits = found.hits if found is not None else 0
            alert = existing.get(key)
            if found is not None and value is not None and value >= rule.warn_at and hits > 0:
                written = self._raise_or_update(session, rule, subject, window, value, found, alert, applied, now=now)
                if written is not None:
                    alert, new_evidence = written
                    applied.alert_of[key] = alert.id
                    if alert.tripped and new_evidence:
                        trips.append((rule, alert))
            elif alert is not None and not alert.cleared:
                alert.cleared, alert.cleared_at = True, now
                if value is not None:
                    alert.value, alert.hits = value, hits
                alert.version += 1
                alert.updated_at = now
                applied.cleared.append(alert.id)
                applied.alert_of[key] = alert.id
                applied.changes.append((AuditAction.ALERT_CLEARED, alert))
        session.flush()
        return trips

    def _raise_or_update(
        self,
        session: Session,
        rule: AnyRule,
        subject: str,
        window: Window,
        value: float,
        found: sql.Aggregate,
        alert: Alert | None,
        applied: Applied,
        *,
        now: datetime,
    ) -> tuple[Alert, bool] | None:
        """Write the alert of a finding; answer it and whether it has new evidence (None: nothing changed)."""
        hits = found.hits
        tripped = rule.trip_at is not None and value >= rule.trip_at
        if (
            alert is not None
            and not alert.cleared
            and alert.hits == hits
            and sql.same_value(alert.value, value)
            and alert.tripped == tripped
        ):
            return None
        rows = sql.evidence(session.connection(), rule, self.zone, subject, window)
        _, _, unit, kind, officer = rows[0]
        first_at, last_at = found.first_at, found.last_at
        assert first_at is not None  # there are hits
        assert last_at is not None
        evidence = {"event_ids": [row[0] for row in rows], "count": hits, "value": value, "truncated": hits > len(rows)}
        # 连带责任: the officer answerable for the subject, when the subject is a person with one.
        responsible: str | None = None
        subject_kind: str | None = None  # police / auxiliary / staff when the subject is a person
        if rule.group_by is GroupBy.RESPONSIBLE_OFFICER:
            responsible, subject_kind = subject, "police"
        elif rule.group_by is GroupBy.OPERATOR:
            subject_kind = kind
            responsible = officer if kind != "police" else None
        if alert is None:
            alert = Alert(
                rule_id=rule.id,
                severity=str(rule.severity.value),
                subject_type=str(rule.group_by.value),
                subject_id=subject,
                domains=domains_text(rule),
                window_start=window.start,
                window_end=window.end,
                value=value,
                hits=hits,
                unit=unit,
                responsible_officer=responsible,
                subject_kind=subject_kind,
                stage="warning",
                stage_entered_at=now,
                tripped=tripped,
                cleared=False,
                cleared_at=None,
                first_event_at=first_at,
                last_event_at=last_at,
                evidence=evidence,
                version=1,
                created_at=now,
                updated_at=now,
            )
            session.add(alert)
            session.flush()
            applied.raised.append(alert.id)
            applied.changes.append((AuditAction.ALERT_RAISED, alert))
            return alert, True
        new_evidence = alert.hits != hits or (tripped and not alert.tripped)
        alert.value, alert.hits, alert.evidence = value, hits, evidence
        alert.tripped = tripped  # the value's state now; the breaker it opened stays open until reset
        alert.cleared, alert.cleared_at = False, None
        alert.first_event_at, alert.last_event_at = first_at, last_at
        alert.unit, alert.responsible_officer, alert.subject_kind = unit, responsible, subject_kind
        alert.severity, alert.domains = str(rule.severity.value), domains_text(rule)
        alert.version += 1
        alert.updated_at = now
        applied.updated.append(alert.id)
        applied.changes.append((AuditAction.ALERT_UPDATED, alert))
        return alert, new_evidence


# --- breakers ---------------------------------------------------------------------------------------------------


def _audit(session: Session, changes: list[tuple[str, Alert]], *, actor: str, now: datetime) -> None:
    """Record the alerts written, as they stand at the end of the evaluation (one entry per change)."""
    audit.record_all(
        session,
        [
            audit.Change(
                actor,
                action,
                "alert",
                str(alert.id),
                {
                    "rule_id": alert.rule_id,
                    "subject_type": alert.subject_type,
                    "subject_id": alert.subject_id,
                    "window_start": alert.window_start,
                    "value": alert.value,
                    "hits": alert.hits,
                    "tripped": alert.tripped,
                    "cleared": alert.cleared,
                },
                alert.unit,
                now,
            )
            for action, alert in changes
        ],
    )


def trip(session: Session, rule: AnyRule, alert: Alert, *, actor: str, now: datetime) -> int | None:
    """Open the breaker of (rule, alert's subject) unless it is open already; its id when it opened."""
    breaker = locked_breaker(
        session,
        kind="rule",
        rule_id=rule.id,
        subject_type=alert.subject_type,
        subject_id=alert.subject_id,
        domains=domains_text(rule),
        alert_id=alert.id,
        now=now,
    )
    before = effective_state(breaker, now)
    if before == "open":
        return None
    breaker.state = "open"
    breaker.alert_id = alert.id
    breaker.opened_at = now
    breaker.probation_until = None
    breaker.domains = domains_text(rule)
    breaker.version += 1
    reason = f"{rule.id}: value {alert.value:g} reached trip_at {rule.trip_at:g}"
    if before == "half_open":
        reason += " during probation"
    record_change(session, breaker, action="trip", before=before, actor=actor, reason=reason, now=now, unit=alert.unit)
    return breaker.id


__all__ = ["Applied", "Evaluator", "Key", "domains_text", "trip"]
