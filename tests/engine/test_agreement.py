"""Inline evaluation, a scan and a backtest agree (issue 3, item 6).

Random event streams, posted in random order and random batches, raise exactly the alerts the
reference evaluator finds over the stored events (and clear exactly those whose value fell back); a
scan over the same events then has nothing to change, and a scan over a copy without alerts raises
the same alerts again. Every rule type is covered, with filters, subjects of every kind, spike
baselines and time-of-day rules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.alerts.evaluate import Evaluator
from app.alerts.inline import evaluate_stored, evaluating
from app.alerts.models import Alert
from app.breakers.models import Breaker, BreakerChange
from app.db import Database, utcnow
from app.events import service as event_service
from app.events.schemas import EventIn
from app.rules.aggregates import build, ensure_built
from app.rules.engine import Finding, measure
from app.rules.loader import parse_rules_text
from app.rules.models import RuleWindow
from app.rules.service import backtest
from app.rules.spec import RuleSet
from app.rules.sql import same_value
from app.scans.service import run_scan
from tests.conftest import empty_tables

RULES_TEXT = """
- {id: p-count, type: count, label_zh: 计数, label_en: count, severity: high, domains: [vehicle_registration],
   filter: {action: register}, group_by: operator, window: 1h, warn_at: 3, trip_at: 5}
- {id: p-ratio, type: ratio, label_zh: 比例, label_en: ratio, severity: medium, domains: [vehicle_inspection],
   numerator: {attributes.result: pass}, min_events: 3, group_by: business_unit, window: 1h, warn_at: 0.7, trip_at: 0.9}
- {id: p-distinct, type: distinct, label_zh: 去重, label_en: distinct, severity: low, domains: [vehicle_registration],
   field: operator.id, group_by: agent, window: 1h, warn_at: 2}
- {id: p-sum, type: sum, label_zh: 求和, label_en: sum, severity: high, domains: [violation_handling],
   filter: {attributes.fine_amount: {gte: 50}}, field: attributes.fine_amount, group_by: responsible_officer,
   window: 1h, warn_at: 300, trip_at: 500}
- {id: p-off, type: off_hours, label_zh: 非工作时间, label_en: off hours, severity: low,
   domains: [vehicle_registration, vehicle_inspection], allowed_hours: "09:00-10:00", group_by: org_unit,
   window: 1d, warn_at: 2}
- {id: p-spike, type: spike, label_zh: 突增, label_en: spike, severity: medium,
   domains: [vehicle_registration, violation_handling],
   filter: {operator.kind: {ne: staff}}, group_by: operator, window: 15m, baseline_windows: 2, min_events: 2,
   warn_at: 2}
"""
RULES = RuleSet(parse_rules_text(RULES_TEXT, "property.yaml"))
# (zone, first instant): 08:30 in Shanghai, across the off-hours edge at 09:00 (no daylight saving: windows
# are found by arithmetic); 00:30 in New York on the night the clocks go back at 02:00 (windows found by a
# join with the reference windows, one of them two hours long).
ZONES = [
    ("Asia/Shanghai", datetime(2026, 11, 21, 0, 30, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 11, 1, 4, 30, tzinfo=UTC)),
]
OPERATORS = [
    {"id": "P1", "kind": "police", "unit": "U1"},
    {"id": "P2", "kind": "police", "unit": "U2"},
    {"id": "A1", "kind": "auxiliary", "unit": "U1", "responsible_officer": "P1"},
    {"id": "S1", "kind": "staff", "unit": "U2", "responsible_officer": "P2"},
]


@st.composite
def an_event(draw: st.DrawFn) -> dict[str, Any]:
    domain = draw(st.sampled_from(["vehicle_registration", "vehicle_inspection", "violation_handling"]))
    body: dict[str, Any] = {
        "domain": domain,
        "occurred_at": draw(st.integers(0, 150)),  # minutes after the zone's first instant
        "operator": draw(st.sampled_from(OPERATORS)),
        "agent_id": draw(st.sampled_from(["AG1", "AG2", None])),
        "business_unit": draw(st.sampled_from([{"id": "IS-1", "kind": "inspection_station"}, None])),
    }
    if domain == "vehicle_registration":
        body["action"] = draw(st.sampled_from(["register", "register", "transfer"]))
        body["attributes"] = {"vehicle_type": draw(st.sampled_from(["car", "new_energy"]))}
    elif domain == "vehicle_inspection":
        body["action"] = "inspection"
        body["business_unit"] = {"id": draw(st.sampled_from(["IS-1", "IS-2"])), "kind": "inspection_station"}
        body["attributes"] = {
            "result": draw(st.sampled_from(["pass", "pass", "fail"])),
            "duration_seconds": draw(st.integers(0, 900)),
            "vehicle_type": "car",
        }
    else:
        body["action"] = draw(st.sampled_from(["penalty_issued", "record_modified"]))
        fine = draw(st.one_of(st.integers(0, 200), st.sampled_from([62.5, 99.75])))
        body["attributes"] = {"fine_amount": fine, "points": draw(st.integers(0, 6))}
    return body


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Events, and the order they are posted in: a permutation cut into batches."""
    events = draw(st.lists(an_event(), min_size=1, max_size=30))
    for i, body in enumerate(events):
        body["source_event_id"] = f"E{i:03d}"
    order = draw(st.permutations(range(len(events))))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=len(events))))
    batches, last = [], 0
    for cut in [*cuts, len(events)]:
        if cut > last:
            batches.append(list(order[last:cut]))
            last = cut
    return events, batches


def post(db: Database, zone: tzinfo, bodies: list[dict[str, Any]], rules: RuleSet = RULES) -> None:
    """Store and evaluate as the API does (after a reset of the tables, the first post builds the aggregates)."""
    events = [EventIn.model_validate(body) for body in bodies]
    event_service.validate(events, batch=True)

    def work(session: Session, evaluator: Evaluator) -> None:
        stored = event_service.ingest(session, source="prop", events=events, batch=True)
        evaluate_stored(session, evaluator, source="prop", stored=stored, now=utcnow())

    evaluating(db, zone, lambda _refresh: rules, work)


def alerts(db: Database) -> dict[tuple[str, str, datetime], Alert]:
    with db.session() as session:
        found = {(a.rule_id, a.subject_id, a.window_start): a for a in session.scalars(select(Alert))}
        session.expunge_all()
    return found


AlertKey = tuple[str, str, datetime]


def reference(
    db: Database, zone: ZoneInfo, start: datetime, rules: RuleSet = RULES
) -> tuple[dict[AlertKey, Finding], dict[AlertKey, Finding]]:
    """The backtest's findings over the stored events, and the reference's measure of every evaluated window."""
    from app.events.models import Event
    from app.events.router import event_out

    findings: dict[AlertKey, Finding] = {}
    with db.session() as session:
        for rule in rules:
            for f in backtest(
                session, rule=rule, time_from=start - timedelta(days=1), time_to=start + timedelta(days=1), zone=zone
            ):
                findings[(rule.id, f.subject_id, f.window_start)] = f
        events = [event_out(row).model_dump(mode="json") for row in session.scalars(select(Event))]
    measured = {(rule.id, f.subject_id, f.window_start): f for rule in rules for f in measure(rule, events, zone)}
    return findings, measured


def figures(db: Database) -> list[tuple[Any, ...]]:
    with db.session() as session:
        rows = session.execute(select(*RuleWindow.__table__.c).order_by(*RuleWindow.__table__.primary_key))
        return [tuple(row) for row in rows]


def assert_matches(
    found: dict[tuple[str, str, datetime], Alert], findings: dict[Any, Finding], measured: dict[AlertKey, Finding]
) -> None:
    """Active alerts are the findings; cleared ones follow their window's value, hits and evidence."""
    active = {key: alert for key, alert in found.items() if not alert.cleared}
    assert set(active) == set(findings)
    for key, alert in found.items():
        if alert.cleared:
            assert alert.cleared_at is not None, key
            assert key not in findings, key
            if key not in measured:
                continue  # the window is not evaluated (a ratio or spike under min_events): the alert stays
        finding = findings[key] if key in findings else measured[key]
        assert same_value(alert.value, finding.value), (key, alert.value, finding.value)
        assert alert.hits == finding.hits, key
        assert alert.tripped == finding.tripped, key
        assert alert.evidence["event_ids"] == list(finding.event_ids[:100]), key
        assert alert.first_event_at == finding.first_event_at, key
        assert alert.last_event_at == finding.last_event_at, key


@pytest.mark.parametrize(("zone_name", "start"), ZONES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
def test_inline_scan_and_backtest_agree(
    db: Database, zone_name: str, start: datetime, stream: tuple[list[dict[str, Any]], list[list[int]]]
) -> None:
    empty_tables(db)
    zone = ZoneInfo(zone_name)
    events, batches = stream
    events = [{**body, "occurred_at": (start + timedelta(minutes=body["occurred_at"])).isoformat()} for body in events]
    for batch in batches:
        post(db, zone, [events[i] for i in batch])

    inline = alerts(db)
    findings, measured = reference(db, zone, start)
    assert_matches(inline, findings, measured)
    kept = figures(db)  # the figures kept inline are the figures built from the events
    for rule in RULES:
        build(db, rule, zone, force=True)
    assert figures(db) == kept
    event(f"alerts raised: {min(len(inline), 3)}+")
    event(f"alerts cleared: {any(a.cleared for a in inline.values())}")
    event(f"rule types firing: {len({k[0] for k in findings})}")

    rescan = run_scan(db, RULES, zone, trigger="cli", actor="test")
    assert (rescan.alerts_raised, rescan.alerts_updated, rescan.alerts_cleared) == (0, 0, 0)
    assert rescan.windows_repaired == 0
    assert alerts(db).keys() == inline.keys()

    with db.session(write=True) as session:  # a copy of the events without alerts
        for table in (BreakerChange, Breaker, Alert):
            session.execute(delete(table))
    fresh = run_scan(db, RULES, zone, trigger="cli", actor="test")
    scanned = alerts(db)
    assert fresh.alerts_raised == len(findings) == len(scanned)
    assert_matches(scanned, findings, measured)


# A reload changes the definitions of three rules (what p-count and p-sum count, p-off's hours) and only
# the threshold of a fourth: the changed rules' figures are rebuilt over history, p-ratio's kept.
CHANGED = RuleSet(
    parse_rules_text(
        RULES_TEXT.replace(
            "filter: {action: register}, group_by: operator", "filter: {action: transfer}, group_by: operator"
        )
        .replace("{attributes.fine_amount: {gte: 50}}", "{attributes.fine_amount: {gte: 100}}")
        .replace('allowed_hours: "09:00-10:00"', 'allowed_hours: "08:45-09:30"')
        .replace("warn_at: 0.7, trip_at: 0.9", "warn_at: 0.6, trip_at: 0.9"),
        "property.yaml",
    )
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
def test_across_a_reload_inline_and_a_scan_agree_with_the_reference(
    db: Database, stream: tuple[list[dict[str, Any]], list[list[int]]]
) -> None:
    empty_tables(db)
    zone_name, start = ZONES[0]
    zone = ZoneInfo(zone_name)
    events, batches = stream
    events = [{**body, "occurred_at": (start + timedelta(minutes=body["occurred_at"])).isoformat()} for body in events]
    half = len(batches) // 2
    ensure_built(db, RULES, zone)  # what the service does when it starts
    for batch in batches[:half]:
        post(db, zone, [events[i] for i in batch])
    builds = ensure_built(db, CHANGED, zone)  # what a reload does before it answers
    assert sorted(b.rule_id for b in builds) == ["p-count", "p-off", "p-sum"]
    for batch in batches[half:]:
        post(db, zone, [events[i] for i in batch], rules=CHANGED)
    # Alerts of windows no later event touched still show the old definition's value: a scan brings them in line
    # (and finds no figure to repair).
    scan = run_scan(db, CHANGED, zone, trigger="cli", actor="test")
    assert scan.windows_repaired == 0
    findings, measured = reference(db, zone, start, CHANGED)
    assert_matches(alerts(db), findings, measured)
