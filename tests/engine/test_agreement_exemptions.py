"""With exemptions (报备) in play, inline evaluation, a scan and a backtest still agree (issue 11).

Random exemptions are approved before a random event stream is posted; halfway through, some are
revoked and others approved late. Then every alert names the exemption the reference says covers it
(the lowest approved id whose rule or domains, subject and time overlap the alert's), inline, after a
rescan, after a scan of a copy without alerts, and in the backtest; no exempted alert has opened a
breaker, and every counted alert over `trip_at` has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from app.alerts.models import Alert
from app.breakers.models import Breaker, BreakerChange
from app.db import Database, utcnow
from app.exemptions import service as exemptions
from app.rules.engine import subject_of
from app.rules.service import backtest
from app.rules.spec import AnyRule
from app.scans.service import run_scan
from tests.conftest import empty_tables
from tests.engine.test_agreement import RULES, ZONES, alerts, an_event, post


@st.composite
def dense_streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """At least a dozen events within 50 minutes (alerts to cover), posted in a random order and batches."""
    events = draw(st.lists(an_event(), min_size=12, max_size=30))
    for i, body in enumerate(events):
        body["source_event_id"] = f"E{i:03d}"
        body["occurred_at"] //= 3
    order = draw(st.permutations(range(len(events))))
    cuts = sorted(draw(st.sets(st.integers(1, len(events) - 1), max_size=6)))
    bounds = [0, *cuts, len(events)]
    return events, [list(order[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@dataclass
class Filing:
    """An exemption as the test filed it, with what became of it."""

    rule_id: str | None
    domains: list[str] | None
    subject_type: str
    subject_id: str
    start_minute: int  # minutes after the zone's first instant
    minutes: int
    early: bool  # approved before the events (else approved halfway, or never)
    late: bool  # approved halfway
    revoke: bool  # revoked halfway (if approved early)
    id: int = 0


@st.composite
def filings(draw: st.DrawFn, events: list[dict[str, Any]]) -> Filing:
    """An exemption for the subject of one of the events under one of its rules (or its domain), around its time:
    most of them cover some alert."""
    body = draw(st.sampled_from(events))
    candidates = [rule for rule in RULES if any(d.value == body["domain"] for d in rule.domains)]
    # Rules with a trip_at come first: their breakers are what an exemption holds back.
    rule = draw(st.sampled_from([r for r in candidates if r.trip_at is not None] * 3 + candidates))
    subject = subject_of(rule.group_by, body) or "nobody"
    whole_domain = draw(st.booleans())
    return Filing(
        rule_id=None if whole_domain else rule.id,
        domains=[body["domain"]] if whole_domain else None,
        subject_type=rule.group_by.value,
        subject_id=subject,
        start_minute=body["occurred_at"] - draw(st.integers(0, 30)),
        minutes=draw(st.integers(15, 120)),
        early=draw(st.booleans()),
        late=draw(st.booleans()),
        revoke=draw(st.booleans()),
    )


def in_force(filing: Filing) -> bool:
    """Approved at the end: early and not revoked, or approved halfway."""
    return (filing.early and not filing.revoke) or (not filing.early and filing.late)


def reference_cover(
    filed: list[Filing], start: datetime, rule: AnyRule, subject: str, window_start: datetime, window_end: datetime
) -> int | None:
    covering = []
    for f in filed:
        begins = start + timedelta(minutes=f.start_minute)
        ends = begins + timedelta(minutes=f.minutes)
        if not in_force(f) or f.subject_type != rule.group_by.value or f.subject_id != subject:
            continue
        if not (begins < window_end and window_start < ends):
            continue
        if f.rule_id is not None and f.rule_id != rule.id:
            continue
        if f.rule_id is None and not {d.value for d in rule.domains} & set(f.domains or []):
            continue
        covering.append(f.id)
    return min(covering) if covering else None


def file_all(db: Database, filed: list[Filing], start: datetime) -> None:
    with db.session(write=True) as session:
        for f in filed:
            begins = start + timedelta(minutes=f.start_minute)
            f.id = exemptions.request(
                session,
                RULES,
                rule_id=f.rule_id,
                domains=f.domains,
                subject_type=f.subject_type,
                subject_id=f.subject_id,
                starts_at=begins,
                ends_at=begins + timedelta(minutes=f.minutes),
                reason="报备",
                reference=None,
                actor="source",
                now=utcnow(),
            ).id


def decide(db: Database, filed: list[Filing], *, halfway: bool) -> None:
    with db.session(write=True) as session:
        scope = exemptions.Scope()
        for f in filed:
            exemption = exemptions.get(session, f.id, scope=scope, lock=True)
            if not halfway and f.early:
                exemptions.decide(session, RULES, exemption, approve=True, reason="ok", actor="inspector", now=utcnow())
            elif halfway and f.early and f.revoke:
                exemptions.revoke(session, RULES, exemption, reason="no", actor="inspector", now=utcnow())
            elif halfway and not f.early and f.late:
                exemptions.decide(session, RULES, exemption, approve=True, reason="ok", actor="inspector", now=utcnow())


def expected(db: Database, filed: list[Filing], start: datetime) -> dict[tuple[str, str, datetime], int | None]:
    found = alerts(db)
    result: dict[tuple[str, str, datetime], int | None] = {}
    for key, alert in found.items():
        rule = RULES.get(alert.rule_id)
        assert rule is not None
        result[key] = reference_cover(filed, start, rule, alert.subject_id, alert.window_start, alert.window_end)
    return result


def check_alerts_and_breakers(db: Database, filed: list[Filing], start: datetime) -> None:
    found = alerts(db)
    want = expected(db, filed, start)
    assert {key: alert.exemption_id for key, alert in found.items()} == want
    assert all(alert.exempted == (alert.exemption_id is not None) for alert in found.values())
    with db.session() as session:
        open_pairs = {
            (b.rule_id, b.subject_id): b.alert_id
            for b in session.scalars(select(Breaker).where(Breaker.state == "open", Breaker.kind == "rule"))
        }
    by_id = {alert.id: alert for alert in found.values()}
    always = [f for f in filed if f.early and not f.revoke]  # approved before any event and never revoked
    for (rule_id, subject), alert_id in open_pairs.items():
        alert = by_id[alert_id]
        rule = RULES.get(rule_id)
        assert rule is not None
        # An alert covered the whole time never opened a breaker.
        assert reference_cover(always, start, rule, subject, alert.window_start, alert.window_end) is None, alert_id
    for alert in found.values():
        if alert.tripped and not alert.cleared and not alert.exempted:
            assert (alert.rule_id, alert.subject_id) in open_pairs, alert.id


@pytest.mark.parametrize(("zone_name", "start"), ZONES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=dense_streams(), data=st.data())
def test_with_exemptions_inline_scan_and_backtest_agree(
    db: Database,
    zone_name: str,
    start: datetime,
    stream: tuple[list[dict[str, Any]], list[list[int]]],
    data: st.DataObject,
) -> None:
    empty_tables(db)
    zone = ZoneInfo(zone_name)
    events, batches = stream
    filed = data.draw(st.lists(filings(events), min_size=1, max_size=8), label="filings")
    events = [{**body, "occurred_at": (start + timedelta(minutes=body["occurred_at"])).isoformat()} for body in events]
    file_all(db, filed, start)
    decide(db, filed, halfway=False)
    half = len(batches) // 2
    for batch in batches[:half]:
        post(db, zone, [events[i] for i in batch])
    decide(db, filed, halfway=True)
    for batch in batches[half:]:
        post(db, zone, [events[i] for i in batch])

    inline = alerts(db)
    check_alerts_and_breakers(db, filed, start)
    event(f"exempted alerts: {min(sum(a.exempted for a in inline.values()), 3)}+")
    event(f"tripped exempted: {any(a.exempted and a.tripped for a in inline.values())}")

    rescan = run_scan(db, RULES, zone, trigger="cli", actor="test")
    assert (rescan.alerts_raised, rescan.alerts_updated, rescan.alerts_cleared) == (0, 0, 0)
    assert {k: a.exemption_id for k, a in alerts(db).items()} == {k: a.exemption_id for k, a in inline.items()}

    with db.session() as session:  # the backtest names the same exemptions
        for rule in RULES:
            findings = backtest(
                session, rule=rule, time_from=start - timedelta(days=1), time_to=start + timedelta(days=1), zone=zone
            )
            covers = exemptions.covers_of(session, {f.subject_id for f in findings})
            for f in findings:
                named = exemptions.covering(covers, rule, f.subject_id, f.window_start, f.window_end)
                assert named == inline[(rule.id, f.subject_id, f.window_start)].exemption_id
                assert named == reference_cover(filed, start, rule, f.subject_id, f.window_start, f.window_end)

    with db.session(write=True) as session:  # a copy of the events without alerts
        for table in (BreakerChange, Breaker, Alert):
            session.execute(delete(table))
    run_scan(db, RULES, zone, trigger="cli", actor="test")
    scanned = alerts(db)
    assert {k: a.exemption_id for k, a in scanned.items() if not a.cleared} == {
        k: a.exemption_id for k, a in inline.items() if not a.cleared
    }
    # Now every exemption in force was in force throughout.
    check_alerts_and_breakers(db, [replace(f, early=True, revoke=False) for f in filed if in_force(f)], start)
