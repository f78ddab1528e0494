"""Rule aggregates (issue 8): the running figures inline evaluation keeps per (rule, subject, window).

What a user sees: a cleared alert keeps following its window; sums are exact; a rule changed by a reload
is measured over history at once; an event taken by a worker whose rules were replaced meanwhile is
counted for the rules in force; drifted figures are found and repaired by a scan, and rebuilt by
`supervision aggregates rebuild`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from app.alerts.evaluate import Evaluator
from app.alerts.inline import plan
from app.cli import cli
from app.config import Settings
from app.db import Database
from app.events import service as events_service
from app.events.schemas import EventIn
from app.rules import aggregates
from app.rules.loader import parse_rules_text
from app.rules.models import RuleBuild, RuleWindow, RuleWindowValue
from app.rules.spec import RuleSet
from app.scans.service import run_scan
from tests.factories import bearer, make_event
from tests.rules.test_router import app_client, write_rules

ZONE = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 21, 9, 0, tzinfo=ZONE)

RULES = """\
- id: g-pass
  type: ratio
  label_zh: 检测通过率
  label_en: inspection pass rate
  domains: [vehicle_inspection]
  numerator: {attributes.result: pass}
  min_events: 5
  group_by: business_unit
  window: 1d
  warn_at: 0.875
  severity: medium
- id: g-fines
  type: sum
  label_zh: 罚款合计
  label_en: fines in total
  domains: [violation_handling]
  field: attributes.fine_amount
  group_by: operator
  window: 1d
  warn_at: 0.3
  severity: low
- id: g-agents
  type: distinct
  label_zh: 中介经手民警数
  label_en: officers per agent
  domains: [vehicle_registration]
  field: attributes.plate_class
  group_by: agent
  window: 1d
  warn_at: 2
  severity: high
"""


FINES_FILTERED = "  field: attributes.fine_amount\n  filter: {attributes.fine_amount: {gte: 50}}\n"


def inspection(result: str, minute: int, station: str = "IS-07") -> dict[str, Any]:
    return make_event(
        domain="vehicle_inspection",
        action="inspection",
        occurred_at=(START + timedelta(minutes=minute)).isoformat(),
        business_unit={"id": station, "kind": "inspection_station"},
        attributes={"result": result, "duration_seconds": 600, "vehicle_type": "car"},
    )


def fine(amount: float | int, minute: int) -> dict[str, Any]:
    return make_event(
        domain="violation_handling",
        action="penalty_issued",
        occurred_at=(START + timedelta(minutes=minute)).isoformat(),
        attributes={"fine_amount": amount, "points": 0},
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_rules(tmp_path / "rules", g=RULES)


@pytest.fixture
def gclient(settings: Settings, db: Database, folder: Path) -> Iterator[TestClient]:
    with app_client(settings, folder) as client:
        yield client


def post_all(client: TestClient, key: str, events: list[dict[str, Any]]) -> list[int]:
    """Post a batch; the stored events' ids."""
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def only_alert(client: TestClient, key: str, rule: str) -> dict[str, Any]:
    items = [
        item
        for cleared in ("true", "false")
        for item in client.get(f"/v1/alerts?rule={rule}&cleared={cleared}", headers=bearer(key)).json()["items"]
    ]
    assert len(items) == 1, items
    detail = client.get(f"/v1/alerts/{items[0]['id']}", headers=bearer(key))
    assert detail.status_code == 200
    return detail.json()  # type: ignore[no-any-return]


def test_a_cleared_alert_keeps_following_its_window(gclient: TestClient, source_key: str, inspector_key: str) -> None:
    # The station: 16 of 18 passed (0.889, an alert), then 19 of 22 (0.864, under 0.875).
    post_all(gclient, source_key, [inspection("pass" if i < 16 else "fail", i) for i in range(18)])
    alert = only_alert(gclient, inspector_key, "g-pass")
    assert (alert["cleared"], alert["hits"], round(alert["value"], 3)) == (False, 18, 0.889)
    post_all(gclient, source_key, [inspection("pass", 20), inspection("fail", 21)])  # 17/20 = 0.85
    alert = only_alert(gclient, inspector_key, "g-pass")
    assert (alert["cleared"], alert["hits"], alert["value"]) == (True, 20, 0.85)
    cleared_at = alert["cleared_at"]
    post_all(gclient, source_key, [inspection("pass", 22), inspection("pass", 23)])  # 19/22 = 0.864, still under
    alert = only_alert(gclient, inspector_key, "g-pass")
    assert (alert["cleared"], alert["hits"], round(alert["value"], 3)) == (True, 22, 0.864)
    assert alert["cleared_at"] == cleared_at
    assert len(alert["evidence"]["event_ids"]) == 22
    post_all(gclient, source_key, [inspection("pass", 30 + i) for i in range(10)])  # 29/32 = 0.906: back
    alert = only_alert(gclient, inspector_key, "g-pass")
    assert (alert["cleared"], alert["hits"], alert["cleared_at"]) == (False, 32, None)


def test_sums_are_exact(gclient: TestClient, db: Database, source_key: str, inspector_key: str) -> None:
    post_all(gclient, source_key, [fine(0.1, 1), fine(0.2, 2)])  # 0.1 + 0.2 is 0.30000000000000004 in floats
    with db.session() as session:
        total = session.scalars(select(RuleWindow.total).where(RuleWindow.rule_id == "g-fines")).one()
    assert total == Decimal("0.3")
    alert = only_alert(gclient, inspector_key, "g-fines")
    assert alert["value"] == 0.3


def test_distinct_values_count_once_each(gclient: TestClient, source_key: str, inspector_key: str) -> None:
    def registration(value: Any, minute: int) -> dict[str, Any]:
        return make_event(
            occurred_at=(START + timedelta(minutes=minute)).isoformat(),
            attributes={"vehicle_type": "car", "plate_class": value},
        )

    post_all(gclient, source_key, [registration(1, 1), registration(1.0, 2), registration("1", 3)])
    post_all(gclient, source_key, [registration("1", 4), registration(True, 5)])  # 1, "1", true: three values
    alert = only_alert(gclient, inspector_key, "g-agents")
    assert (alert["value"], alert["hits"]) == (3, 5)


def test_a_rule_changed_by_a_reload_is_measured_over_history(
    gclient: TestClient, folder: Path, db: Database, source_key: str, inspector_key: str, admin_key: str
) -> None:
    before = post_all(gclient, source_key, [fine(100, 1), fine(200, 2), fine(5, 3)])
    # Only fines of at least 50 count from now on: the stored 5 no longer does, for the past too.
    write_rules(folder, g=RULES.replace("  field: attributes.fine_amount\n", FINES_FILTERED))
    response = gclient.post("/v1/rules/reload", headers=bearer(admin_key))
    assert response.status_code == 200, response.text
    with db.session() as session:  # rebuilt from the stored events before the reload answered
        figures = session.execute(select(RuleWindow.n, RuleWindow.total).where(RuleWindow.rule_id == "g-fines")).one()
    assert (figures.n, figures.total) == (2, Decimal(300))
    after = post_all(gclient, source_key, [fine(50, 4), fine(10, 5)])
    with db.session() as session:
        figures = session.execute(select(RuleWindow.n, RuleWindow.total).where(RuleWindow.rule_id == "g-fines")).one()
    assert (figures.n, figures.total) == (3, Decimal(350))
    alert = only_alert(gclient, inspector_key, "g-fines")
    assert (alert["value"], alert["hits"]) == (350, 3)
    # The evidence is listed anew for the rule in force, not appended to what the old one counted.
    assert alert["evidence"]["event_ids"] == [before[0], before[1], after[0]]


def test_a_worker_whose_rules_were_replaced_counts_the_event_for_the_rules_in_force(
    settings: Settings, folder: Path, db: Database, source_key: str, inspector_key: str, admin_key: str
) -> None:
    with app_client(settings, folder) as first, app_client(settings, folder) as second:
        post_all(first, source_key, [fine(100, 1), fine(5, 2)])
        write_rules(folder, g=RULES.replace("  field: attributes.fine_amount\n", FINES_FILTERED))
        assert first.post("/v1/rules/reload", headers=bearer(admin_key)).status_code == 200
        # The second worker has not looked for a reload yet (it does so once a second): its rule still counts
        # every fine. Its upsert finds rows built for the new rule, so it catches up and evaluates again.
        post_all(second, source_key, [fine(7, 3), fine(60, 4)])
        with db.session() as session:
            figures = session.execute(
                select(RuleWindow.n, RuleWindow.total).where(RuleWindow.rule_id == "g-fines")
            ).one()
        assert (figures.n, figures.total) == (2, Decimal(160))
        assert only_alert(second, inspector_key, "g-fines")["value"] == 160


def test_a_scan_repairs_drifted_figures_and_says_so(
    gclient: TestClient, db: Database, source_key: str, inspector_key: str
) -> None:
    post_all(gclient, source_key, [inspection("pass", i) for i in range(6)])
    rules = RuleSet(parse_rules_text(RULES, "g.yaml"))
    with db.session(write=True) as session:  # drift: a window that counts events that are not there
        session.execute(update(RuleWindow).where(RuleWindow.rule_id == "g-pass").values(n=RuleWindow.n + 4))
        session.execute(text("DELETE FROM rule_window_values"))
    scan = run_scan(db, rules, ZONE, trigger="cli", actor="test")
    assert scan.windows_repaired == 1
    with db.session() as session:
        assert session.scalars(select(RuleWindow.n).where(RuleWindow.rule_id == "g-pass")).one() == 6
    alert = only_alert(gclient, inspector_key, "g-pass")
    assert (alert["value"], alert["hits"]) == (1.0, 6)
    assert run_scan(db, rules, ZONE, trigger="cli", actor="test").windows_repaired == 0


def test_a_scan_of_a_copy_without_aggregates_rebuilds_them(gclient: TestClient, db: Database, source_key: str) -> None:
    post_all(gclient, source_key, [fine(100, 1), fine(250, 2), inspection("pass", 3)])
    with db.session() as session:
        before = sorted(
            tuple(row) for row in session.execute(select(RuleWindow.rule_id, RuleWindow.n, RuleWindow.total))
        )
    with db.session(write=True) as session:
        for table in (RuleWindow, RuleWindowValue, RuleBuild):
            session.execute(text(f"DELETE FROM {table.__tablename__}"))
    run_scan(db, RuleSet(parse_rules_text(RULES, "g.yaml")), ZONE, trigger="cli", actor="test")
    with db.session() as session:
        after = sorted(
            tuple(row) for row in session.execute(select(RuleWindow.rule_id, RuleWindow.n, RuleWindow.total))
        )
    assert after == before


def test_the_cli_rebuilds_the_aggregates(
    gclient: TestClient,
    db: Database,
    folder: Path,
    settings: Settings,
    source_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    post_all(gclient, source_key, [fine(100, 1), fine(0.25, 2), inspection("fail", 3)])
    with db.session(write=True) as session:
        session.execute(update(RuleWindow).values(n=99, hits=99))
    monkeypatch.setenv("SUPERVISION_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SUPERVISION_RULES_DIR", str(folder))
    from app.config import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["aggregates", "rebuild", "--rule", "g-fines"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("g-fines: 1 windows in ")
        missing = CliRunner().invoke(cli, ["aggregates", "rebuild", "--rule", "nope"])
        assert missing.exit_code == 1
    finally:
        get_settings.cache_clear()
    with db.session() as session:
        rows = {row.rule_id: row.n for row in session.execute(select(RuleWindow.rule_id, RuleWindow.n))}
    assert rows == {"g-fines": 2, "g-pass": 99}  # only the rule asked for
    assert aggregates.fingerprint(RuleSet(parse_rules_text(RULES, "g.yaml"))["g-fines"], ZONE)


def test_fingerprints_ignore_thresholds_and_labels_only() -> None:
    rules = RuleSet(parse_rules_text(RULES, "g.yaml"))
    relabelled = RuleSet(
        parse_rules_text(RULES.replace("warn_at: 0.3", "warn_at: 9").replace("罚款合计", "罚款"), "g.yaml")
    )
    filtered = RuleSet(parse_rules_text(RULES.replace("  field: attributes.fine_amount\n", FINES_FILTERED), "g.yaml"))
    assert aggregates.fingerprint(rules["g-fines"], ZONE) == aggregates.fingerprint(relabelled["g-fines"], ZONE)
    assert aggregates.fingerprint(rules["g-fines"], ZONE) != aggregates.fingerprint(filtered["g-fines"], ZONE)
    assert aggregates.fingerprint(rules["g-fines"], ZONE) != aggregates.fingerprint(rules["g-fines"], ZoneInfo("UTC"))


def test_evidence_lists_the_first_hundred_counted_events_whatever_the_order(
    gclient: TestClient, source_key: str, inspector_key: str
) -> None:
    for start in range(0, 150, 10):  # in time order, ten at a time: appended while there is room
        post_all(gclient, source_key, [inspection("pass", 100 + i) for i in range(start, start + 10)])
    alert = only_alert(gclient, inspector_key, "g-pass")
    listed = alert["evidence"]["event_ids"]
    assert (len(listed), alert["evidence"]["count"], alert["evidence"]["truncated"]) == (100, 150, True)
    assert listed == sorted(listed)
    post_all(gclient, source_key, [inspection("pass", 5)])  # a late event before all of them comes first
    alert = only_alert(gclient, inspector_key, "g-pass")
    late = max(alert["evidence"]["event_ids"])
    assert alert["evidence"]["event_ids"] == [late, *listed[:99]]
    assert alert["first_event_at"].startswith("2026-11-21T01:05:00")


def test_after_a_reload_the_evidence_lists_what_the_rule_in_force_counts(
    settings: Settings, db: Database, tmp_path: Path, source_key: str, inspector_key: str, admin_key: str
) -> None:
    big = "  field: attributes.fine_amount\n  filter: {attributes.fine_amount: {gte: 50}}\n"
    small = "  field: attributes.fine_amount\n  filter: {attributes.fine_amount: {lt: 150}}\n"
    folder = write_rules(tmp_path / "reloaded", g=RULES.replace("  field: attributes.fine_amount\n", big))
    with app_client(settings, folder) as client:
        first = post_all(client, source_key, [fine(100, 1), fine(200, 2), fine(5, 3)])  # counted: 100 and 200
        write_rules(folder, g=RULES.replace("  field: attributes.fine_amount\n", small))  # now: 100 and 5
        assert client.post("/v1/rules/reload", headers=bearer(admin_key)).status_code == 200
        later = post_all(client, source_key, [fine(60, 4)])
        alert = only_alert(client, inspector_key, "g-fines")
    assert (alert["value"], alert["hits"]) == (165, 3)
    assert alert["evidence"]["event_ids"] == [first[0], first[2], later[0]]


def test_the_statement_storing_events_holds_their_windows_locks(db: Database) -> None:
    """Inline evaluation sends no locking statement of its own: the events insert takes the planned locks, so
    a second writer to the same window waits from the moment the first one stored its event."""
    if db.dialect != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; SQLite serialises writers with BEGIN IMMEDIATE")
    rules = RuleSet(parse_rules_text(RULES, "g.yaml"))
    evaluator = Evaluator(rules, ZONE)
    event = EventIn.model_validate(inspection("pass", 0))
    planned = plan(evaluator, source="lock-test", events=[event])
    expected = {int(lock_id) for lock_id in planned.locks.ids.strip("{}").split(",")}
    assert len(expected) == 2  # g-pass's build lock (shared) and its (station, day) window's lock
    key_lock = aggregates.key_lock_id(next(iter(planned.deltas)))
    with db.session(write=True) as session:
        (stored,) = events_service.ingest(session, source="lock-test", events=[event], locks=planned.locks)
        assert not stored.duplicate
        held = {
            (classid << 32 | objid) - (1 << 64 if classid >= 1 << 31 else 0)
            for classid, objid in session.execute(
                text(
                    "SELECT classid::bigint, objid::bigint FROM pg_locks"
                    " WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
                )
            )
        }
        assert held == expected
        with db.engine.connect() as other:
            assert other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key_lock}) is False
            other.rollback()
    with db.engine.connect() as other:
        assert other.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key_lock}) is True
        other.rollback()
