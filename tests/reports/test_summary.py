"""GET /v1/reports/summary: what the alerts of a period became, per unit, domain or rule; JSON or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from tests.alerts.test_router import (
    COUNT_RULE,
    MORE_RULES,
    app_client,
    exam,
    is_problem,
    police,
    put_unit,
    raise_alert,
    write_rules,
)
from tests.conftest import KeyMaker
from tests.factories import bearer

FUTURE = "2099-01-01T00:00:00+08:00"


@pytest.fixture
def rclient(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    with app_client(settings, write_rules(tmp_path / "rules", COUNT_RULE + MORE_RULES)) as test_client:
        yield test_client


def move(client: TestClient, key: str, alert_id: int, to: str, **fields: Any) -> None:
    response = client.post(
        f"/v1/alerts/{alert_id}/transitions", json={"to": to, "reason": f"to {to}", **fields}, headers=bearer(key)
    )
    assert response.status_code == 200, response.text


def report(client: TestClient, key: str, **params: Any) -> dict[str, dict[str, Any]]:
    response = client.get("/v1/reports/summary", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    return {row["group"]: row for row in response.json()["items"]}


@pytest.fixture
def story(rclient: TestClient, source_key: str, inspector_key: str, admin_key: str) -> dict[str, int]:
    """Four alerts in November 2026: OP1 (DD1-ZD1) walked to accountability, OP2 (DD1) interviewed and
    left in supervision past due, OP3 (DD2) dismissed, and an auxiliary's exam alert in DD2 kept as raised."""
    for unit_id, parent in [("ZD", None), ("DD1", "ZD"), ("DD1-ZD1", "DD1"), ("DD2", "ZD")]:
        put_unit(rclient, admin_key, unit_id, parent)
    a1 = raise_alert(rclient, source_key, police("OP1", "DD1-ZD1"))
    a2 = raise_alert(rclient, source_key, police("OP2", "DD1"), hour=10)
    a3 = raise_alert(rclient, source_key, police("OP3", "DD2"), hour=11)
    aux = {"id": "A7", "kind": "auxiliary", "unit": "DD2", "responsible_officer": "OP3"}
    results = [rclient.post("/v1/events", json=exam(m, aux), headers=bearer(source_key)).json() for m in range(2)]
    (a4,) = results[-1]["alerts"]
    move(rclient, inspector_key, a1, "supervision", assignee_unit="DD1", due_at=FUTURE)
    move(
        rclient,
        inspector_key,
        a1,
        "interview",
        interviewees=["OP1"],
        level="discipline",
        held_at="2026-11-22T10:00:00+08:00",
        summary="谈话",
    )
    move(rclient, inspector_key, a1, "accountability", outcome="demerit")
    move(
        rclient,
        inspector_key,
        a2,
        "interview",
        interviewees=["OP2"],
        level="unit",
        held_at="2026-11-22T10:00:00+08:00",
        summary="谈话",
    )
    move(rclient, inspector_key, a3, "dismissed")
    return {"a1": a1, "a2": a2, "a3": a3, "a4": a4}


def test_the_summary_by_unit_counts_what_the_alerts_became(
    rclient: TestClient, story: dict[str, int], inspector_key: str
) -> None:
    rows = report(rclient, inspector_key, group_by="unit", period="2026-11")
    assert set(rows) == {"DD1-ZD1", "DD1", "DD2"}
    zd1, dd1, dd2 = rows["DD1-ZD1"], rows["DD1"], rows["DD2"]
    assert zd1["alerts_raised"] == 1
    assert zd1["reached"] == {"supervision": 1, "interview": 1, "accountability": 1, "closed": 0, "dismissed": 0}
    assert zd1["interviews"] == {"unit": 0, "discipline": 1, "committee": 0}
    assert zd1["accountability"]["police"]["demerit"] == 1
    assert sum(n for kind in zd1["accountability"].values() for n in kind.values()) == 1
    assert dd1["reached"]["interview"] == 1
    assert dd1["reached"]["supervision"] == 0  # skipped
    assert dd1["interviews"]["unit"] == 1
    assert dd2["alerts_raised"] == 2
    assert dd2["reached"]["dismissed"] == 1
    # Every stay that ended has a median; warning stays ended for three alerts.
    assert zd1["median_hours"]["warning"] is not None
    assert zd1["median_hours"]["accountability"] is None  # still there


def test_the_summary_agrees_with_the_alert_list(rclient: TestClient, story: dict[str, int], inspector_key: str) -> None:
    for group_by in ("unit", "domain", "rule"):
        rows = report(rclient, inspector_key, group_by=group_by, period="2026")
        listed = rclient.get("/v1/alerts", params={"limit": 500}, headers=bearer(inspector_key)).json()["items"]
        assert sum(row["alerts_raised"] for row in rows.values()) == len(listed), group_by
        for stage in ("interview", "dismissed"):
            in_stage = sum(1 for a in listed if a["stage"] == stage)
            assert sum(row["reached"][stage] for row in rows.values()) >= in_stage
    by_rule = report(rclient, inspector_key, group_by="rule", period="2026-Q4")
    assert {k: v["alerts_raised"] for k, v in by_rule.items()} == {"t-count": 3, "t-exam": 1}
    by_domain = report(rclient, inspector_key, group_by="domain", period="2026-11")
    assert {k: v["alerts_raised"] for k, v in by_domain.items()} == {"vehicle_registration": 3, "driver_testing": 1}


def test_other_periods_hold_nothing(rclient: TestClient, story: dict[str, int], inspector_key: str) -> None:
    assert report(rclient, inspector_key, period="2026-10") == {}
    assert report(rclient, inspector_key, period="2025") == {}
    assert report(rclient, inspector_key, period="2026-Q3") == {}
    window = {"from": "2026-11-21T09:00:00+08:00", "to": "2026-11-21T10:00:00+08:00"}
    assert set(report(rclient, inspector_key, **window)) == {"DD1-ZD1"}


def test_overdue_supervisions_are_counted_flagged_and_measured(
    rclient: TestClient, story: dict[str, int], inspector_key: str, admin_key: str, db: Database
) -> None:
    from sqlalchemy import update

    from app.alerts.models import Alert

    move(rclient, inspector_key, story["a2"], "accountability", outcome="criticism")
    a3 = story["a4"]
    move(rclient, inspector_key, a3, "supervision", assignee_unit="DD2", due_at=FUTURE)
    with db.session(write=True) as session:  # time passes: the due time is behind us
        session.execute(update(Alert).where(Alert.id == a3).values(due_at=Alert.created_at))
    rows = report(rclient, inspector_key, period="2026-11")
    assert rows["DD2"]["overdue_supervisions"] == 1
    assert rows["DD1"]["accountability"]["police"]["criticism"] == 1
    overdue = rclient.get("/v1/alerts", params={"overdue": "true"}, headers=bearer(inspector_key)).json()["items"]
    assert [a["id"] for a in overdue] == [a3]
    # A scan flags it once, and /metrics reports it.
    first = rclient.post("/v1/scans", json={}, headers=bearer(admin_key)).json()
    second = rclient.post("/v1/scans", json={}, headers=bearer(admin_key)).json()
    assert (first["overdue_flagged"], second["overdue_flagged"]) == (1, 0)
    assert "supervision_alerts_overdue 1.0" in rclient.get("/metrics").text
    flagged = rclient.get("/v1/audit", params={"action": "alert.overdue"}, headers=bearer(admin_key)).json()["items"]
    assert [entry["object_id"] for entry in flagged] == [str(a3)]


def test_csv_has_a_header_row_and_the_same_figures(
    rclient: TestClient, story: dict[str, int], inspector_key: str
) -> None:
    response = rclient.get(
        "/v1/reports/summary",
        params={"group_by": "unit", "period": "2026-11"},
        headers={**bearer(inspector_key), "Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(response.text)))
    assert [line["group"] for line in lines] == ["DD1", "DD1-ZD1", "DD2"]
    zd1 = next(line for line in lines if line["group"] == "DD1-ZD1")
    assert zd1["alerts_raised"] == "1"
    assert zd1["reached_accountability"] == "1"
    assert zd1["interviews_discipline"] == "1"
    assert zd1["accountability_police_demerit"] == "1"


def test_a_scoped_inspector_sees_only_its_units(rclient: TestClient, story: dict[str, int], make_key: KeyMaker) -> None:
    scoped = make_key("inspector", "dd1-inspector", unit="DD1")
    assert set(report(rclient, scoped, period="2026-11")) == {"DD1", "DD1-ZD1"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"period": "2026-13"}, "period"),
        ({"period": "2026-Q5"}, "period"),
        ({"period": "26"}, "period"),
        ({"group_by": "operator"}, "group_by"),
        ({"from": "2026-11-01T00:00:00"}, "from"),
        ({"from": "2026-11-02T00:00:00+08:00", "to": "2026-11-01T00:00:00+08:00"}, "to"),
        ({"period": "2026", "from": "2026-11-02T00:00:00+08:00"}, "period"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    client: TestClient, inspector_key: str, params: dict[str, str], field: str
) -> None:
    response = client.get("/v1/reports/summary", params=params, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert ["query", field] in [error["loc"] for error in response.json()["errors"]]


def test_no_key_is_401_and_a_source_key_403(client: TestClient, source_key: str) -> None:
    assert is_problem(client.get("/v1/reports/summary"), 401)
    assert is_problem(client.get("/v1/reports/summary", headers=bearer(source_key)), 403)
