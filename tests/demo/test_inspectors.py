"""The demo's inspectors: after the month loads (at a small scale), every page of the console has something in
it, the October report has the seed's shape, the audit chain verifies, and it all repeats for a seed."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from app.alerts.evaluate import Evaluator
from app.alerts.models import Alert, AlertTransition
from app.audit import service as audit
from app.breakers.models import Breaker, BreakerChange
from app.db import Database
from app.demo.city import EXAM_CENTRE, build_city
from app.demo.inspectors import FILER, SECOND_INSPECTOR, STORY_RULES
from app.demo.load import DemoSummary, load_demo
from app.demo.stories import extra_stories, planted_stories
from app.exemptions.models import Exemption
from app.reports import service as reports
from tests.conftest import empty_tables
from tests.rules.test_shipped import shipped

ZONE = ZoneInfo("Asia/Shanghai")
SEED = 7
SCALE = 0.03  # the stories do not depend on the scale; the normal business only fills the month


def load(db: Database, seed: int = SEED) -> DemoSummary:
    return load_demo(db, seed=seed, days=30, scale=SCALE, evaluator=Evaluator(shipped(), ZONE), inspectors=True)


def october(db: Database) -> reports.Row:
    """The October summary, all units together."""
    start, end = reports.period_range("2026-10", ZONE)
    with db.session() as session:
        rows = reports.summary(session, group_by="domain", time_from=start, time_to=end, now=datetime.now(ZONE))
        by_unit = reports.summary(session, group_by="unit", time_from=start, time_to=end, now=datetime.now(ZONE))
    total = reports.Row(group="all")
    total.alerts_raised = sum(r.alerts_raised for r in by_unit)
    total.alerts_exempted = sum(r.alerts_exempted for r in by_unit)
    total.overdue_supervisions = sum(r.overdue_supervisions for r in by_unit)
    total.business_units_suspended = sum(r.business_units_suspended for r in by_unit)
    for row in by_unit:
        for stage, n in row.reached.items():
            total.reached[stage] += n
        for level, n in row.interviews.items():
            total.interviews[level] += n
        for kind, outcomes in row.accountability.items():
            for outcome, n in outcomes.items():
                total.accountability[kind][outcome] += n
    assert rows  # the domain grouping sees the same month
    return total


def snapshot(db: Database) -> dict[str, Any]:
    """What the inspectors left behind, without ids or wall-clock times."""
    with db.session() as session:
        alerts = {a.id: (a.rule_id, a.subject_id, a.window_start) for a in session.scalars(select(Alert))}
        moves = [
            (alerts[t.alert_id], t.from_stage, t.to_stage, t.actor, t.at, t.reason, t.details)
            for t in session.scalars(select(AlertTransition).order_by(AlertTransition.id))
        ]
        changes = [
            (c.action, c.from_state, c.to_state, c.actor, c.at)
            for c in session.scalars(select(BreakerChange).order_by(BreakerChange.id))
        ]
        stages = sorted((*key, a.stage, a.exempted) for a in session.scalars(select(Alert)) for key in [alerts[a.id]])
    return {"moves": moves, "breaker_changes": changes, "stages": stages}


def test_the_inspectors_play_every_part_and_the_report_has_the_seeds_shape(db: Database) -> None:
    summary = load(db)
    done = Counter(what for _, what in summary.inspected.acts)
    row = october(db)

    # Escalations: three, one of them left past its due date.
    assert row.reached["supervision"] == done["supervision"] == 3
    assert row.overdue_supervisions == 1
    # Interviews at each of the three levels (三级约谈).
    assert all(n >= 1 for n in row.interviews.values()), row.interviews
    assert row.interviews == {"unit": 4, "discipline": 2, "committee": 2}
    # Accountability for police, auxiliaries and staff; one business unit suspended (停业整改).
    people = {kind: sum(outcomes.values()) for kind, outcomes in row.accountability.items()}
    assert people == {"police": 2, "auxiliary": 2, "staff": 1, "other": 0}
    assert row.business_units_suspended == 1
    # One false positive dismissed.
    assert row.reached["dismissed"] == done["dismissed"] == 1
    # The seed's shape: most alerts are never escalated; interviews outnumber the people held accountable.
    interviews = sum(row.interviews.values())
    assert row.reached["supervision"] < row.alerts_raised / 2
    assert interviews > sum(people.values())
    assert row.alerts_raised > interviews
    # The fleet's registration: filed by the registration system, approved by an inspector, its alert exempted.
    assert row.alerts_exempted == 1

    with db.session() as session:
        exemption, waiting = session.scalars(select(Exemption).order_by(Exemption.id))
        assert (exemption.status, exemption.requested_by, exemption.decided_by) == ("approved", FILER, SECOND_INSPECTOR)
        # And one request is left for whoever opens the console to decide: the exam centre's test day.
        assert (waiting.status, waiting.requested_by, waiting.subject_id) == ("requested", FILER, EXAM_CENTRE)
        assert waiting.starts_at - waiting.filed_at > timedelta(days=6)  # filed a week ahead
        fleet = next(s for s in extra_stories(build_city(SEED), seed=SEED) if s.key == "fleet-registration")
        (exempted,) = session.scalars(select(Alert).where(Alert.exempted.is_(True)))
        assert (exempted.rule_id, exempted.subject_id, exempted.exemption_id) == (
            STORY_RULES["fleet-registration"],
            fleet.subject_id,
            exemption.id,
        )
        assert exempted.tripped  # past trip_at, yet no breaker: the filing covers it
        assert session.scalars(select(Breaker).where(Breaker.subject_id == fleet.subject_id)).first() is None
        # A breaker reset by an inspector re-trips on probation with the next rushed inspection.
        rushed = next(s for s in planted_stories(build_city(SEED), seed=SEED) if s.key == "rushed-inspection")
        breaker = session.scalars(select(Breaker).where(Breaker.subject_id == rushed.subject_id)).one()
        history = [
            (c.action, c.from_state, c.to_state)
            for c in session.scalars(
                select(BreakerChange).where(BreakerChange.breaker_id == breaker.id).order_by(BreakerChange.id)
            )
        ]
        assert history == [("trip", "closed", "open"), ("reset", "open", "half_open"), ("trip", "half_open", "open")]
        retrip = session.scalars(
            select(BreakerChange).where(BreakerChange.breaker_id == breaker.id).order_by(BreakerChange.id.desc())
        ).first()
        assert retrip is not None
        assert "during probation" in retrip.reason
        # Every move was made by a named inspector, inside the demo month (or just after it).
        for move in session.scalars(select(AlertTransition)):
            assert move.actor == "inspector-zhang"
            assert move.at.astimezone(ZONE).month in (10, 11)
    audit.seal_pending(db)
    with db.session() as session:
        assert audit.verify(session).ok


def test_the_inspectors_repeat_themselves_for_a_seed_and_never_twice_on_one_database(db: Database) -> None:
    first = load(db)
    again = load_demo(
        db, seed=SEED, days=30, scale=SCALE, evaluator=Evaluator(shipped(), ZONE), inspectors=True, force=True
    )
    assert again.new == 0
    assert again.inspected.acts == []  # the month was stored already: no move is made twice
    before = snapshot(db)
    empty_tables(db)
    second = load(db)
    assert second.inspected.acts == first.inspected.acts
    assert snapshot(db) == before


def test_a_short_window_skips_the_moves_whose_alerts_are_not_there(db: Database) -> None:
    summary = load_demo(db, seed=SEED, days=1, scale=SCALE, evaluator=Evaluator(shipped(), ZONE), inspectors=True)
    assert summary.inspected.acts == []
    with db.session() as session:
        assert session.scalars(select(AlertTransition)).first() is None
