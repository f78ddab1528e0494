"""Scans: every rule over every window holding stored events in a range, with set-based SQL.

A scan is the reconciliation of the rules' aggregates with the events. Per rule it reads one ``GROUP BY
subject, window`` statement over the range (no event is read into Python) and, in the same snapshot, the
rule's aggregate rows (:mod:`app.rules.aggregates`). Rows that differ from the events (drift: a bug, a
hand edit, an event stored by a worker on rules since replaced) are measured again under their keys'
locks and rewritten; the scan counts them (``windows_repaired``). Then the values are compared with the
stored alerts, and the (rule, subject, window) keys where they differ go to
:class:`app.alerts.evaluate.Evaluator` — the code the inline evaluation uses — which locks each key and
writes the alert from the (repaired) rows. So a scan finds exactly what inline evaluation finds, a rule
added later reaches back over history, and scans running at the same time (in any number of processes or
hosts) write each alert once. Keys are applied in small write transactions, so ingest is never held up
behind a whole scan on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from sqlalchemy import ColumnElement, func, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.alerts.evaluate import Applied, Evaluator, Key
from app.alerts.models import Alert
from app.alerts.service import overdue_sql
from app.audit import service as audit
from app.audit.service import seal_pending, take_checkpoint
from app.config import Settings
from app.db import Database, insert_ignoring, utcnow
from app.errors import NotFound
from app.events.models import Event
from app.rules import aggregates as rule_aggregates
from app.rules import sql
from app.rules.spec import AnyRule, RuleSet, SpikeRule
from app.rules.state import RulesInForce
from app.rules.windows import Window
from app.scans.models import Lease, Scan
from app.webhooks import outbox

log = logging.getLogger("supervision.scans")

APPLY_CHUNK = 200  # keys per write transaction
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Plan:
    """What one rule's measurement found to fix."""

    keys: dict[Key, Window]  # alerts to bring in line
    groups: int  # (subject, window) groups measured
    drifted: dict[sql.Key, Window]  # aggregate rows that differ from the events


def _listed(dialect: str) -> ColumnElement[bool]:
    """Whether an alert's evidence says where its listing ends; when not, it is to be listed again (its rule's
    definition changed since, or it predates the aggregates)."""
    if dialect == "postgresql":
        listed: ColumnElement[bool] = type_coerce(Alert.evidence, JSONB).has_key("listed_until")
        return listed
    return func.json_extract(Alert.evidence, "$.listed_until").is_not(None)


def plan_rule(session: Session, rule: AnyRule, zone: tzinfo, start: datetime, end: datetime) -> Plan:
    """Measure ``rule`` over the windows overlapping [start, end); the rows that drifted and the keys whose
    alert must change. The session should read one snapshot (the events and the rows agree in it)."""
    windows = sql.scan_windows(rule, zone, start, end)
    connection = session.connection()
    aggregates = sql.measure_windows(connection, rule, zone, windows)
    evaluated = windows[rule.baseline_windows :] if isinstance(rule, SpikeRule) else windows
    by_start = {w.start: (i, w) for i, w in enumerate(windows)}
    first, last = evaluated[0].start, evaluated[-1].start
    rows = rule_aggregates.stored(connection, rule, windows[0].start, windows[-1].start)
    drifted = {
        key: by_start[key[1]][1]
        for key in aggregates.keys() | rows.keys()
        if key[1] in by_start
        and (key not in aggregates or key not in rows or not rule_aggregates.same_figures(aggregates[key], rows[key]))
    }
    stored = {
        (row.subject_id, row.window_start): row
        for row in session.execute(
            select(
                Alert.subject_id,
                Alert.window_start,
                Alert.value,
                Alert.hits,
                Alert.tripped,
                Alert.cleared,
                _listed(connection.dialect.name).label("listed"),
            ).where(Alert.rule_id == rule.id, Alert.window_start >= first, Alert.window_start <= last)
        )
    }
    keys: dict[Key, Window] = {}
    groups = 0
    for (subject, ws), found in aggregates.items():
        index, window = by_start[ws]
        if ws < first:
            continue  # a spike baseline window before the range
        groups += 1
        baseline = windows[max(0, index - rule.baseline_windows) : index] if isinstance(rule, SpikeRule) else ()
        value = sql.value_of(rule, (subject, ws), aggregates, baseline)
        alert = stored.pop((subject, ws), None)
        if value is not None and found.hits > 0 and (value >= rule.warn_at or alert is not None):
            # A finding, or an alert's window below warn_at (the alert follows it, cleared): as the evaluator.
            cleared = value < rule.warn_at
            tripped = rule.trip_at is not None and value >= rule.trip_at
            if (
                alert is None
                or alert.cleared != cleared
                or alert.hits != found.hits
                or not sql.same_value(alert.value, value)
                or (tripped and not alert.tripped)
                or not alert.listed
            ):
                keys[(rule.id, subject, ws)] = window
        elif alert is not None and not alert.cleared:
            keys[(rule.id, subject, ws)] = window
    # Alerts whose window no longer holds any considered event (the rule changed): cleared.
    for (subject, ws), alert in stored.items():
        if not alert.cleared and ws in by_start:
            keys[(rule.id, subject, ws)] = by_start[ws][1]
    return Plan(keys=keys, groups=groups, drifted=drifted)


def event_range(session: Session) -> tuple[datetime, datetime] | None:
    """[first, last] occurred_at of the stored events, or None when there are none."""
    first, last = session.execute(select(func.min(Event.occurred_at), func.max(Event.occurred_at))).one()
    if first is None:
        return None
    return first, last


def _start(db: Database, *, trigger: str, actor: str, time_from: datetime | None, time_to: datetime | None) -> int:
    with db.session(write=True) as session:
        scan = Scan(
            trigger=trigger,
            actor=actor,
            range_from=time_from,
            range_to=time_to,
            status="running",
            started_at=utcnow(),
        )
        session.add(scan)
        session.flush()
        return scan.id


def run_scan(
    db: Database,
    rules: RuleSet,
    zone: tzinfo,
    *,
    trigger: str,
    actor: str,
    time_from: datetime | None = None,
    time_to: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> Scan:
    """Run a scan to the end and answer its record (status ``done``; ``failed`` and re-raised on error)."""
    scan_id = _start(db, trigger=trigger, actor=actor, time_from=time_from, time_to=time_to)
    started = time.perf_counter()
    applied = Applied()
    groups = events = repaired = 0
    try:
        with db.session() as session:
            bounds = event_range(session)
            if bounds is not None:
                start = time_from if time_from is not None else bounds[0]
                end = time_to if time_to is not None else bounds[1] + _TICK
                in_range = (Event.occurred_at >= start, Event.occurred_at < end)
                events = session.scalar(select(func.count()).select_from(Event).where(*in_range)) or 0
        evaluator = Evaluator(rules, zone)
        rule_aggregates.ensure_built(db, rules, zone)
        if bounds is not None and start < end:
            for rule in rules:
                with db.session() as session:
                    if db.dialect == "postgresql":  # the events and the rows read in one snapshot
                        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                    plan = plan_rule(session, rule, zone, start, end)
                groups += plan.groups
                drifted = sorted(plan.drifted.items())
                for i in range(0, len(drifted), APPLY_CHUNK):
                    with db.session(write=True) as session:
                        repaired += rule_aggregates.repair(
                            session.connection(), rule, zone, dict(drifted[i : i + APPLY_CHUNK])
                        )
                items = sorted(plan.keys.items())
                for i in range(0, len(items), APPLY_CHUNK):
                    with db.session(write=True) as session:
                        applied.add(
                            evaluator.apply(
                                session, dict(items[i : i + APPLY_CHUNK]), actor=f"scan {scan_id}", now=utcnow()
                            )
                        )
                if progress is not None:
                    progress(
                        f"{rule.id}: {plan.groups} windows, {len(plan.drifted)} drifted, {len(plan.keys)} to update"
                    )
    except BaseException as exc:
        with db.session(write=True) as session:
            session.execute(
                update(Scan)
                .where(Scan.id == scan_id)
                .values(
                    status="failed",
                    finished_at=utcnow(),
                    duration_ms=int((time.perf_counter() - started) * 1000),
                    error=f"{type(exc).__name__}: {exc}"[:2000],
                )
            )
        raise
    with db.session(write=True) as session:
        overdue = flag_overdue(session, now=utcnow(), actor=f"scan {scan_id}")
        scan = session.get_one(Scan, scan_id)
        scan.overdue_flagged = len(overdue)
        scan.status = "done"
        scan.finished_at = utcnow()
        scan.rules = len(rules)
        scan.windows = groups
        scan.events = events
        scan.alerts_raised = len(applied.raised)
        scan.alerts_updated = len(set(applied.updated) - set(applied.raised))
        scan.alerts_cleared = len(applied.cleared)
        scan.breakers_tripped = len(applied.tripped)
        scan.windows_repaired = repaired
        scan.duration_ms = int((time.perf_counter() - started) * 1000)
        session.flush()
        session.expunge(scan)
    # The events this scan read become evidence: a checkpoint of them closes the scan (outside any lock).
    take_checkpoint(db, actor=f"scan {scan_id}")
    log.info(
        "scan done",
        extra={
            "scan_id": scan_id,
            "raised": scan.alerts_raised,
            "updated": scan.alerts_updated,
            "repaired": scan.windows_repaired,
        },
    )
    if repaired:
        log.warning("scan %s repaired %s aggregate windows that differed from the events", scan_id, repaired)
    return scan


def flag_overdue(session: Session, *, now: datetime, actor: str) -> list[int]:
    """Mark the supervisions that have passed their due time since the last scan (audited); their ids."""
    query = select(Alert.id, Alert.unit, Alert.due_at, Alert.assignee_unit, Alert.exempted)
    found = list(session.execute(query.where(overdue_sql(now), Alert.overdue_flagged_at.is_(None)).with_for_update()))
    if found:
        session.execute(update(Alert).where(Alert.id.in_([row.id for row in found])).values(overdue_flagged_at=now))
        audit.record_all(
            session,
            [
                audit.Change(
                    actor,
                    "alert.overdue",
                    "alert",
                    str(row.id),
                    {"due_at": row.due_at, "assignee_unit": row.assignee_unit},
                    row.unit,
                    now,
                )
                for row in found
            ],
        )
        for row in found:
            if not row.exempted:
                outbox.notify(session, "alert.overdue", "alert", row.id, row.unit)
    return [row.id for row in found]


def list_scans(session: Session, *, limit: int, after: int | None) -> list[Scan]:
    query = select(Scan)
    if after is not None:
        query = query.where(Scan.id < after)
    return list(session.scalars(query.order_by(Scan.id.desc()).limit(limit)))


def get_scan(session: Session, scan_id: int) -> Scan:
    scan = session.get(Scan, scan_id)
    if scan is None:
        raise NotFound(f"no scan with id {scan_id}")
    return scan


# --- the periodic scan ----------------------------------------------------------------------------------------------

PERIODIC = "periodic-scan"
POLL_S = 5.0  # how often a worker looks whether a period is due


def claim(db: Database, *, name: str, every: timedelta, holder: str, now: datetime | None = None) -> bool:
    """Whether this caller runs the job ``name`` now: true for exactly one caller per period, in any process."""
    now = now or utcnow()
    with db.session(write=True) as session:
        session.execute(
            insert_ignoring(session, Lease.__table__, conflict=("name",)),  # type: ignore[arg-type]
            {"name": name, "due_at": now, "holder": None},
        )
        moved = session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.due_at <= now)
            .values(due_at=now + every, holder=holder)
            .execution_options(synchronize_session=False)
        )
        return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def periodic_scans(db: Database, rules: RulesInForce, settings: Settings) -> None:
    """Run a scan every ``settings.scan_interval``, in whichever worker claims the period first."""
    every = settings.scan_interval
    assert every is not None
    holder = f"{socket.gethostname()}:{os.getpid()}"
    poll = min(every.total_seconds(), POLL_S)
    while True:
        await asyncio.sleep(poll)
        try:
            await run_in_threadpool(seal_pending, db)  # chain what ingest recorded since
            if await run_in_threadpool(claim, db, name=PERIODIC, every=every, holder=holder):
                await run_in_threadpool(
                    run_scan, db, rules.current(db), settings.zone, trigger="periodic", actor=holder
                )
        except Exception:  # the next period tries again; a scan's own failure is recorded in its row
            log.exception("periodic scan failed")
