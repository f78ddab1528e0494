"""Bringing alerts and breakers in line with the stored events, for given (rule, subject, window) keys.

This is the one place alerts are written, whether events were just stored (inline, in the ingest
transaction) or a scan found a window to fix. Each key's figures come from its aggregate row
(:mod:`app.rules.aggregates`): inline, the new events' share is added to the rows by one upsert whose
``RETURNING`` gives the windows' new figures, so the cost per event does not grow with the window;
a scan reads the rows it has checked against the events. Then each key's alert is raised, updated,
cleared or un-cleared, and the subject's breaker trips when the value reaches ``trip_at``. A cleared
alert keeps following its window: its value, hits and evidence change with it.

Concurrency. Two transactions that each add an event to one window must not both decide on it without
the other's event (each would see a value below the threshold and no alert would be raised), nor both
raise its alert. So a transaction takes a lock per key before adding to the rows, in one global order
(no deadlock), and holds it until it commits: the second one's upsert returns figures that include the
first one's events. On PostgreSQL the locks are transaction-level advisory locks on a 64-bit hash of the
key (a collision only serialises two unrelated keys), taken with the rules' build locks (shared); on
SQLite writers are already serialised (``BEGIN IMMEDIATE``). A ``spike`` window's value also depends on
the windows before it, so an event locks and re-decides the windows that use its window as baseline.

Breakers trip when an alert's value reaches ``trip_at`` because of new evidence (the alert is new, its
hits changed, or it has just become tripped), not when a scan re-measures an unchanged window: a reset
breaker is re-opened by new business, not by history it has already answered for.
"""

from __future__ import annotations

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
from app.exemptions import service as exemptions
from app.exemptions.service import Cover
from app.rules import aggregates, sql
from app.rules.aggregates import Delta
from app.rules.engine import subject_of
from app.rules.spec import AnyRule, GroupBy, RuleSet, SpikeRule
from app.rules.windows import Window, WindowGrid
from app.webhooks import outbox

# (rule id, subject, window start)
Key = tuple[str, str, datetime]

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


class _Covers:
    """The approved exemptions of a set of subjects, read on first use (see ``exemptions.approved_for``).

    An evaluation that writes no alert has nothing an exemption could change, and a decision made meanwhile
    marks only alerts that exist; one that writes an alert reads them first, under their share locks."""

    def __init__(self, session: Session, subjects: set[str]) -> None:
        self._session = session
        self._subjects = subjects
        self._covers: list[Cover] | None = None

    def get(self) -> list[Cover]:
        if self._covers is None:
            self._covers = exemptions.approved_for(self._session, self._subjects)
        return self._covers


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

    def touched(
        self, event: Mapping[str, Any], at: datetime, deltas: dict[Key, Delta] | None = None
    ) -> dict[Key, Window]:
        """The keys whose value an event (contract JSON shape, ``occurred_at`` ``at``) may change; with
        ``deltas``, the event's share is added to its windows' deltas too."""
        keys: dict[Key, Window] = {}
        for rule in self.rules.for_domain(event["domain"]):
            if not rule.filter.matches(event):
                continue
            subject = subject_of(rule.group_by, event)
            if subject is None:
                continue
            grid = self.grid(rule)
            window = grid.window(at)
            key = (rule.id, subject, window.start)
            keys[key] = window
            if deltas is not None:
                delta = deltas.get(key)
                if delta is None:
                    delta = deltas[key] = Delta(window.end)
                delta.add(rule, event, at, self.zone)
            if isinstance(rule, SpikeRule):
                for later in grid.after(window, rule.baseline_windows):
                    keys[(rule.id, subject, later.start)] = later
        return keys

    def lock_ids(self, keys: Iterable[Key]) -> aggregates.LockIds:
        """The advisory locks ``apply`` takes for these keys (rules no longer in force are skipped)."""
        listed = [key for key in keys if key[0] in self.rules]
        if not listed:
            return aggregates.NO_LOCKS
        return aggregates.LockIds.of({key[0] for key in listed}, listed)

    # --- bringing keys in line ----------------------------------------------------------------------------------

    def apply(
        self,
        session: Session,
        keys: Mapping[Key, Window],
        *,
        actor: str,
        now: datetime,
        deltas: Mapping[Key, Delta] | None = None,
        locked: bool = False,
    ) -> Applied:
        """Lock every key (``locked``: the transaction holds ``lock_ids(keys)`` already), add the new events'
        ``deltas`` to its figures (inline; a scan passes none and reads the rows), and write its alert and
        breaker as the value says."""
        applied = Applied()
        if not keys:
            return applied
        connection = session.connection()
        by_rule: dict[str, dict[Key, Window]] = {}
        for key, window in keys.items():
            by_rule.setdefault(key[0], {})[key] = window
        # A rule no longer in force is skipped: its alerts stay as they are.
        in_force = {rule.id: rule for rule_id in sorted(by_rule) if (rule := self.rules.get(rule_id)) is not None}
        if not locked:
            aggregates.lock(connection, in_force, (key for key in keys if key[0] in in_force))
        adding = {key: delta for key, delta in (deltas or {}).items() if key[0] in in_force}
        alerted: set[Key] = set()
        fingerprints = {rule_id: aggregates.fingerprint(in_force[rule_id], self.zone) for rule_id, _, _ in adding}
        figures = aggregates.add(connection, in_force, adding, fingerprints, alerted)
        baselines: dict[Key, list[Window]] = {}
        wanted = {key for key in keys if key[0] in in_force and key not in figures}
        for key, window in keys.items():
            rule = in_force.get(key[0])
            if isinstance(rule, SpikeRule):
                baselines[key] = base = self.grid(rule).before(window, rule.baseline_windows)
                wanted.update((rule.id, key[1], w.start) for w in base if (rule.id, key[1], w.start) not in figures)
        figures.update(aggregates.read(connection, in_force, wanted, alerted))
        by_window: dict[str, dict[sql.Key, sql.Aggregate]] = {rule_id: {} for rule_id in in_force}
        for (rule_id, subject, start), found in figures.items():
            by_window[rule_id][(subject, start)] = found
        # Alerts are loaded only for keys that have one, as their rows said under the keys' locks (no alert
        # of a locked key can appear meanwhile), and for keys without a row, which may still have one.
        loading = [key for key in keys if key[0] in in_force and (key in alerted or key not in figures)]
        existing = (
            {
                (alert.rule_id, alert.subject_id, alert.window_start): alert
                for alert in session.scalars(
                    _ALERTS_OF[connection.dialect.name], _alert_keys(connection.dialect.name, loading)
                )
            }
            if loading
            else {}
        )
        # The exemptions are read (and share-locked) only when an alert is to be written: most events write none.
        covers = _Covers(session, {key[1] for key in keys if key[0] in in_force})
        trips: list[tuple[AnyRule, Alert]] = []
        for rule in in_force.values():
            trips += self._apply_rule(
                session,
                rule,
                by_rule[rule.id],
                by_window[rule.id],
                baselines,
                existing,
                adding,
                applied,
                covers,
                now=now,
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
        figures: Mapping[sql.Key, sql.Aggregate],
        baselines: Mapping[Key, list[Window]],
        existing: Mapping[Key, Alert],
        deltas: Mapping[Key, Delta],
        applied: Applied,
        covers: _Covers,
        *,
        now: datetime,
    ) -> list[tuple[AnyRule, Alert]]:
        trips: list[tuple[AnyRule, Alert]] = []
        for key in sorted(keys):
            _, subject, start = key
            window = keys[key]
            value = sql.value_of(rule, (subject, start), figures, baselines.get(key, ()))
            found = figures.get((subject, start))
            hits = found.hits if found is not None else 0
            alert = existing.get(key)
            if found is not None and value is not None and hits > 0 and (value >= rule.warn_at or alert is not None):
                # A finding; or an alert's window that moved below warn_at: the alert follows it, cleared.
                cleared = value < rule.warn_at
                exemption_id = exemptions.covering(covers.get(), rule, subject, window.start, window.end)
                written = self._write(
                    session,
                    rule,
                    subject,
                    window,
                    value,
                    found,
                    alert,
                    deltas.get(key),
                    applied,
                    cleared=cleared,
                    exemption_id=exemption_id,
                    now=now,
                )
                if written is not None:
                    alert, new_evidence = written
                    applied.alert_of[key] = alert.id
                    # An exempted alert (报备) is recorded but trips no breaker.
                    if alert.tripped and new_evidence and not cleared and not alert.exempted:
                        trips.append((rule, alert))
            elif alert is not None and not alert.cleared:
                # Not evaluated any more (a ratio or spike under min_events, or no event left after a change).
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

    def _evidence(
        self,
        session: Session,
        rule: AnyRule,
        subject: str,
        window: Window,
        alert: Alert | None,
        hits: int,
        delta: Delta | None,
    ) -> tuple[list[int], str, tuple[str, str, str | None] | None] | None:
        """The evidence's event ids, the time of the last one listed, and the first event's (unit, operator
        kind, responsible officer) when it was read (None: the alert's first event stays); None where the
        alert's evidence stays as it is.

        The listed events are the first ``EVIDENCE_CAP`` counted ones in (occurred_at, id) order. New events
        after the last one listed are appended (while there is room) without reading the window; only an
        alert's first listing and a late event before the last one listed read the window's first events."""
        if alert is not None and "listed_until" in alert.evidence:
            listed: list[int] = alert.evidence["event_ids"]
            listed_until = alert.evidence["listed_until"]
            new = sorted(delta.counted) if delta is not None else []
            if not new and alert.hits == hits:
                return None
            if new and alert.hits + len(new) == hits and new[0][0] > datetime.fromisoformat(listed_until):
                room = sql.EVIDENCE_CAP - len(listed)
                if room <= 0:
                    return None
                kept = new[:room]
                return [*listed, *(event_id for _, event_id in kept)], kept[-1][0].isoformat(), None
        rows = sql.evidence(session.connection(), rule, self.zone, subject, window)
        if not rows:
            return None
        _, _, unit, kind, officer = rows[0]
        return [row[0] for row in rows], rows[-1][1].isoformat(), (unit, kind, officer)

    def _write(
        self,
        session: Session,
        rule: AnyRule,
        subject: str,
        window: Window,
        value: float,
        found: sql.Aggregate,
        alert: Alert | None,
        delta: Delta | None,
        applied: Applied,
        *,
        cleared: bool,
        exemption_id: int | None,
        now: datetime,
    ) -> tuple[Alert, bool] | None:
        """Write the alert of a window's figures; answer it and whether it has new evidence (None: nothing
        changed). ``cleared``: the value is below ``warn_at`` and the (existing) alert follows it, cleared."""
        hits = found.hits
        tripped = rule.trip_at is not None and value >= rule.trip_at
        if (
            alert is not None
            and alert.cleared == cleared
            and alert.hits == hits
            and sql.same_value(alert.value, value)
            and alert.tripped == tripped
            and alert.exemption_id == exemption_id
            and "listed_until" in alert.evidence  # else its evidence is to be listed again (the rule changed)
        ):
            return None
        listed = self._evidence(session, rule, subject, window, alert, hits, delta)
        if listed is None and alert is None:
            return None  # the rows promise events the table does not hold: the next scan repairs them
        first_at, last_at = found.first_at, found.last_at
        assert first_at is not None  # there are hits
        assert last_at is not None
        if listed is None:
            assert alert is not None
            event_ids, listed_until, first = alert.evidence["event_ids"], alert.evidence["listed_until"], None
        else:
            event_ids, listed_until, first = listed
        if first is None:
            assert alert is not None
            unit, responsible, subject_kind = alert.unit, alert.responsible_officer, alert.subject_kind
        else:
            unit, kind, officer = first
            # 连带责任: the officer answerable for the subject, when the subject is a person with one.
            responsible, subject_kind = None, None  # subject_kind: police / auxiliary / staff for a person
            if rule.group_by is GroupBy.RESPONSIBLE_OFFICER:
                responsible, subject_kind = subject, "police"
            elif rule.group_by is GroupBy.OPERATOR:
                subject_kind = kind
                responsible = officer if kind != "police" else None
        evidence = {
            "event_ids": event_ids,
            "count": hits,
            "value": value,
            "truncated": hits > len(event_ids),
            "listed_until": listed_until,
        }
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
                exempted=exemption_id is not None,
                exemption_id=exemption_id,
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
        if cleared and not alert.cleared:
            alert.cleared, alert.cleared_at = True, now
            applied.cleared.append(alert.id)
            applied.changes.append((AuditAction.ALERT_CLEARED, alert))
        else:
            if not cleared:
                alert.cleared, alert.cleared_at = False, None
            applied.updated.append(alert.id)
            applied.changes.append((AuditAction.ALERT_UPDATED, alert))
        alert.first_event_at, alert.last_event_at = first_at, last_at
        alert.unit, alert.responsible_officer, alert.subject_kind = unit, responsible, subject_kind
        alert.severity, alert.domains = str(rule.severity.value), domains_text(rule)
        alert.exempted, alert.exemption_id = exemption_id is not None, exemption_id
        alert.version += 1
        alert.updated_at = now
        return alert, new_evidence


# --- breakers ---------------------------------------------------------------------------------------------------


def _audit(session: Session, changes: list[tuple[str, Alert]], *, actor: str, now: datetime) -> None:
    """Record the alerts written, as they stand at the end of the evaluation (one entry per change), and tell
    webhooks of them (an exempted alert tells none)."""
    for action, alert in changes:
        if not alert.exempted:
            outbox.notify(session, action, "alert", alert.id, alert.unit)
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
                    "exemption_id": alert.exemption_id,
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
