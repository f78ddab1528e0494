"""The demo month through the ingest code with the shipped rules in force: every planted story raises its
alert as the events arrive, and the alerts stored are exactly the reference evaluator's findings."""

from __future__ import annotations

from sqlalchemy import select

from app.alerts.evaluate import Evaluator
from app.alerts.models import Alert
from app.db import Database
from app.demo.city import build_city
from app.demo.generate import planted_stories
from app.demo.load import load_demo
from app.scans.service import run_scan
from tests.rules.test_shipped import SEED, STORY_RULES, ZONE, demo_findings, shipped


def test_the_demo_month_raises_every_planted_story_inline(db: Database) -> None:
    load_demo(db, seed=SEED, days=30, evaluator=Evaluator(shipped(), ZONE))
    with db.session() as session:
        alerts = list(session.scalars(select(Alert)))
    raised = {(a.rule_id, a.subject_id, a.window_start) for a in alerts if not a.cleared}
    expected = {(rule_id, f.subject_id, f.window_start) for rule_id, found in demo_findings().items() for f in found}
    assert raised == expected
    for story in planted_stories(build_city(SEED), seed=SEED):
        assert (STORY_RULES[story.key], story.subject_id) in {(a.rule_id, a.subject_id) for a in alerts}, story.key
    # A scan over the month afterwards finds nothing the inline evaluation missed.
    scan = run_scan(db, shipped(), ZONE, trigger="cli", actor="test")
    assert (scan.alerts_raised, scan.alerts_updated, scan.alerts_cleared) == (0, 0, 0)
    assert scan.events == 99_001  # the nine stories, the inspectors' two, the normal month
