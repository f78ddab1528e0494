"""GET /v1/rules, GET /v1/rules/{id}, POST /v1/rules/validate, POST /v1/rules/{id}/backtest and rules in /readyz."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import Database
from app.main import create_app
from app.models import Base
from app.rules import service
from tests.conftest import KeyMaker
from tests.factories import bearer, make_event

RULES = """\
- id: t-bulk
  type: count
  label_zh: 单人单小时批量上户
  label_en: Bulk registrations by one operator in an hour
  domains: [vehicle_registration]
  filter: {action: register}
  group_by: operator
  window: 1h
  warn_at: 3
  trip_at: 5
  severity: high
  probation: 24h
"""

MORE_RULES = """\
- id: a-fines
  type: sum
  label_zh: 单人单日罚款总额
  label_en: Fines issued by one operator in a day
  domains: [violation_handling]
  field: attributes.fine_amount
  group_by: operator
  window: 1d
  warn_at: 1000
  severity: medium
"""

DAY_FROM = "2026-11-21T00:00:00+08:00"
DAY_TO = "2026-11-22T00:00:00+08:00"


def write_rules(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder


def app_client(settings: Settings, rules_dir: Path) -> TestClient:
    return TestClient(create_app(settings.model_copy(update={"rules_dir": rules_dir})))


@pytest.fixture
def rclient(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    """An app whose rules folder holds the test's own two rules."""
    folder = write_rules(tmp_path / "rules", vr=RULES, vh=MORE_RULES)
    with app_client(settings, folder) as test_client:
        yield test_client


def problem_locs(response: Any) -> list[list[Any]]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return [error["loc"] for error in response.json()["errors"]]


def row_counts(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def post_events(client: TestClient, key: str, events: list[dict[str, Any]]) -> list[int]:
    response = client.post("/v1/events/batch", json={"events": events}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def registrations(operator: str, count: int, unit: str = "ZS1-CW", hour: int = 9) -> list[dict[str, Any]]:
    return [
        make_event(
            occurred_at=f"2026-11-21T{hour:02d}:{minute * 5:02d}:00+08:00",
            operator={"id": operator, "kind": "police", "unit": unit, "responsible_officer": None},
        )
        for minute in range(count)
    ]


def backtest(client: TestClient, key: str, rule: str = "t-bulk", **body: Any) -> Any:
    return client.post(f"/v1/rules/{rule}/backtest", json=body or {"from": DAY_FROM, "to": DAY_TO}, headers=bearer(key))


# --- GET /v1/rules and GET /v1/rules/{id} -------------------------------------------------------


def test_list_answers_every_rule_sorted_by_id_with_its_full_spec(rclient: TestClient, inspector_key: str) -> None:
    response = rclient.get("/v1/rules", headers=bearer(inspector_key))
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [rule["id"] for rule in body["items"]] == ["a-fines", "t-bulk"]
    bulk = body["items"][1]
    assert bulk == {
        "id": "t-bulk",
        "type": "count",
        "label_zh": "单人单小时批量上户",
        "label_en": "Bulk registrations by one operator in an hour",
        "domains": ["vehicle_registration"],
        "filter": {"action": "register"},
        "group_by": "operator",
        "window": "1h",
        "warn_at": 3,
        "trip_at": 5,
        "severity": "high",
        "probation": "24h",
    }
    fines = body["items"][0]
    assert fines["type"] == "sum"
    assert fines["field"] == "attributes.fine_amount"
    assert fines["trip_at"] is None
    assert fines["window"] == "1d"


def test_list_filters_by_domain(rclient: TestClient, admin_key: str) -> None:
    response = rclient.get("/v1/rules", params={"domain": "violation_handling"}, headers=bearer(admin_key))
    assert response.status_code == 200
    assert [rule["id"] for rule in response.json()["items"]] == ["a-fines"]
    response = rclient.get("/v1/rules", params={"domain": "driver_testing"}, headers=bearer(admin_key))
    assert response.json() == {"items": [], "next_cursor": None}


def test_list_with_an_unknown_domain_is_422(rclient: TestClient, inspector_key: str) -> None:
    response = rclient.get("/v1/rules", params={"domain": "parking"}, headers=bearer(inspector_key))
    assert response.status_code == 422
    assert ["query", "domain"] in problem_locs(response)


def test_default_client_serves_the_shipped_rules(client: TestClient, inspector_key: str) -> None:
    response = client.get("/v1/rules", headers=bearer(inspector_key))
    assert response.status_code == 200
    ids = [rule["id"] for rule in response.json()["items"]]
    assert len(ids) == 18
    assert ids == sorted(ids)


def test_detail_answers_one_rule(rclient: TestClient, inspector_key: str) -> None:
    response = rclient.get("/v1/rules/a-fines", headers=bearer(inspector_key))
    assert response.status_code == 200
    assert response.json()["id"] == "a-fines"
    assert response.json()["warn_at"] == 1000


def test_detail_of_an_unknown_rule_is_404_problem(rclient: TestClient, inspector_key: str) -> None:
    response = rclient.get("/v1/rules/no-such-rule", headers=bearer(inspector_key))
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "no-such-rule" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/rules", "/v1/rules/t-bulk"])
def test_reading_rules_needs_a_key(rclient: TestClient, path: str) -> None:
    assert rclient.get(path).status_code == 401
    assert rclient.get(path, headers=bearer("sv_not-a-real-key")).status_code == 401


@pytest.mark.parametrize("path", ["/v1/rules", "/v1/rules/t-bulk"])
def test_a_source_key_may_not_read_rules(rclient: TestClient, source_key: str, path: str) -> None:
    response = rclient.get(path, headers=bearer(source_key))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


# --- POST /v1/rules/validate --------------------------------------------------------------------


def validate(client: TestClient, key: str, text: str | bytes, content_type: str = "application/yaml") -> Any:
    body = text.encode("utf-8") if isinstance(text, str) else text
    return client.post("/v1/rules/validate", content=body, headers={**bearer(key), "Content-Type": content_type})


@pytest.mark.parametrize("content_type", ["application/yaml", "text/yaml", "text/plain; charset=utf-8"])
def test_validate_good_yaml_answers_the_ids(rclient: TestClient, admin_key: str, content_type: str) -> None:
    response = validate(rclient, admin_key, MORE_RULES + RULES.replace("t-bulk", "t-other"), content_type)
    assert response.status_code == 200
    assert response.json() == {"valid": True, "rules": ["a-fines", "t-other"]}


def test_validate_has_no_side_effects(rclient: TestClient, admin_key: str, db: Database) -> None:
    before = rclient.get("/v1/rules", headers=bearer(admin_key)).json()
    counts = row_counts(db)
    response = validate(rclient, admin_key, RULES.replace("t-bulk", "t-new"))
    assert response.status_code == 200
    assert validate(rclient, admin_key, "- id: broken\n  type: count\n").status_code == 422
    assert rclient.get("/v1/rules", headers=bearer(admin_key)).json() == before
    assert rclient.get("/v1/rules/t-new", headers=bearer(admin_key)).status_code == 404
    assert row_counts(db) == counts


def test_validate_a_syntax_error_is_422(rclient: TestClient, admin_key: str) -> None:
    response = validate(rclient, admin_key, "- id: x\n  type: [count\n")
    assert response.status_code == 422
    assert problem_locs(response) == [["body"]]
    assert "YAML syntax error" in response.json()["errors"][0]["msg"]


def test_validate_an_unknown_type_names_the_rule_index_and_field(rclient: TestClient, admin_key: str) -> None:
    response = validate(
        rclient, admin_key, RULES + RULES.replace("t-bulk", "t-two").replace("type: count", "type: nope")
    )
    assert response.status_code == 422
    assert problem_locs(response) == [["body", 1, "type"]]
    assert "t-two" in response.json()["errors"][0]["msg"]
    assert "unknown rule type" in response.json()["errors"][0]["msg"]


def test_validate_trip_at_below_warn_at_names_the_field(rclient: TestClient, admin_key: str) -> None:
    response = validate(rclient, admin_key, RULES.replace("trip_at: 5", "trip_at: 2"))
    assert response.status_code == 422
    assert problem_locs(response) == [["body", 0, "trip_at"]]
    assert "warn_at" in response.json()["errors"][0]["msg"]


def test_validate_a_document_that_is_not_a_list_is_422(rclient: TestClient, admin_key: str) -> None:
    response = validate(rclient, admin_key, "id: t-bulk\n")
    assert response.status_code == 422
    assert problem_locs(response) == [["body"]]


def test_validate_a_body_that_is_not_utf8_is_422(rclient: TestClient, admin_key: str) -> None:
    response = validate(rclient, admin_key, b"- id: \xff\xfe\n")
    assert response.status_code == 422
    assert problem_locs(response) == [["body"]]


def test_validate_a_json_body_is_415(rclient: TestClient, admin_key: str) -> None:
    response = validate(rclient, admin_key, '{"id": "x"}', "application/json")
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/problem+json")


def test_validate_needs_a_key(rclient: TestClient) -> None:
    response = rclient.post("/v1/rules/validate", content=RULES, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 401


@pytest.mark.parametrize("role", ["inspector", "source"])
def test_validate_is_for_admins_only(rclient: TestClient, make_key: KeyMaker, role: str) -> None:
    response = validate(rclient, make_key(role), RULES)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


# --- POST /v1/rules/{id}/backtest ----------------------------------------------------------------


def test_backtest_finds_the_operator_over_the_threshold(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    tripped_ids = post_events(rclient, source_key, registrations("P1001", 5))
    post_events(rclient, source_key, registrations("P1002", 2))
    response = backtest(rclient, inspector_key)
    assert response.status_code == 200
    items = response.json()["items"]
    assert len(items) == 1
    (item,) = items
    assert item["subject_type"] == "operator"
    assert item["subject_id"] == "P1001"
    assert datetime.fromisoformat(item["window_start"]) == datetime.fromisoformat("2026-11-21T09:00:00+08:00")
    assert datetime.fromisoformat(item["window_end"]) == datetime.fromisoformat("2026-11-21T10:00:00+08:00")
    assert item["value"] == 5
    assert item["tripped"] is True
    assert item["hits"] == 5
    assert item["event_ids"] == tripped_ids


def test_backtest_below_trip_at_is_a_warning(rclient: TestClient, source_key: str, admin_key: str) -> None:
    post_events(rclient, source_key, registrations("P1001", 3))
    (item,) = backtest(rclient, admin_key).json()["items"]
    assert item["value"] == 3
    assert item["tripped"] is False


def test_backtest_counts_only_windows_starting_in_the_range(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    post_events(rclient, source_key, registrations("P1001", 4, hour=9) + registrations("P1001", 4, hour=11))
    response = backtest(rclient, inspector_key, **{"from": "2026-11-21T10:00:00+08:00", "to": DAY_TO})
    (item,) = response.json()["items"]
    assert datetime.fromisoformat(item["window_start"]) == datetime.fromisoformat("2026-11-21T11:00:00+08:00")


def test_backtest_over_a_range_without_events_is_empty(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    post_events(rclient, source_key, registrations("P1001", 5))
    response = backtest(rclient, inspector_key, **{"from": "2026-10-01T00:00:00+08:00", "to": "2026-10-02T00:00:00Z"})
    assert response.status_code == 200
    assert response.json() == {"items": []}


def test_backtest_writes_nothing(rclient: TestClient, source_key: str, inspector_key: str, db: Database) -> None:
    post_events(rclient, source_key, registrations("P1001", 5))
    counts = row_counts(db)
    assert backtest(rclient, inspector_key).json()["items"]
    assert row_counts(db) == counts


def test_a_scoped_inspector_backtests_only_their_units(
    rclient: TestClient, source_key: str, admin_key: str, make_key: KeyMaker
) -> None:
    for unit, parent in (("ZS2", None), ("ZS2-CW", "ZS2")):
        body = {"parent": parent, "label_zh": f"{unit}中队", "label_en": unit}
        assert rclient.put(f"/v1/units/{unit}", json=body, headers=bearer(admin_key)).status_code in (200, 201)
    post_events(rclient, source_key, registrations("P1001", 5, unit="ZS1-CW"))
    inside = post_events(rclient, source_key, registrations("P2001", 3, unit="ZS2-CW"))
    scoped = make_key("inspector", "inspector-zs2", unit="ZS2")
    items = backtest(rclient, scoped).json()["items"]
    assert [(item["subject_id"], item["event_ids"]) for item in items] == [("P2001", inside)]
    everyone = backtest(rclient, admin_key).json()["items"]
    assert sorted(item["subject_id"] for item in everyone) == ["P1001", "P2001"]


def test_backtest_refuses_a_range_holding_too_many_events(
    rclient: TestClient, source_key: str, inspector_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    post_events(rclient, source_key, registrations("P1001", 5))
    monkeypatch.setattr(service, "MAX_BACKTEST_EVENTS", 4)
    response = backtest(rclient, inspector_key)
    assert response.status_code == 422
    assert problem_locs(response) == [["body", "from"]]


def test_backtest_of_an_unknown_rule_is_404(rclient: TestClient, inspector_key: str) -> None:
    response = backtest(rclient, inspector_key, rule="no-such-rule")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"from": DAY_FROM}, ["body", "to"]),
        ({"to": DAY_TO}, ["body", "from"]),
        ({"from": "2026-11-21T00:00:00", "to": DAY_TO}, ["body", "from"]),
        ({"from": DAY_FROM, "to": 1763740800}, ["body", "to"]),
        ({"from": DAY_TO, "to": DAY_FROM}, ["body", "to"]),
        ({"from": DAY_FROM, "to": DAY_FROM}, ["body", "to"]),
        ({"from": "2025-01-01T00:00:00+08:00", "to": "2026-01-03T00:00:00+08:00"}, ["body", "to"]),
        ({"from": DAY_FROM, "to": DAY_TO, "rule": "t-bulk"}, ["body", "rule"]),
    ],
)
def test_backtest_with_a_bad_body_is_422(
    rclient: TestClient, inspector_key: str, body: dict[str, Any], loc: list[Any]
) -> None:
    response = rclient.post("/v1/rules/t-bulk/backtest", json=body, headers=bearer(inspector_key))
    assert response.status_code == 422
    assert loc in problem_locs(response)


def test_backtest_needs_a_key(rclient: TestClient) -> None:
    response = rclient.post("/v1/rules/t-bulk/backtest", json={"from": DAY_FROM, "to": DAY_TO})
    assert response.status_code == 401


def test_a_source_key_may_not_backtest(rclient: TestClient, source_key: str) -> None:
    response = backtest(rclient, source_key)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


# --- loading and /readyz -------------------------------------------------------------------------


def test_readyz_reports_the_rules_loaded(rclient: TestClient) -> None:
    response = rclient.get("/readyz")
    assert response.status_code == 200
    assert response.json()["rules"] == "2 loaded"


def test_a_broken_rules_folder_still_starts_but_is_not_ready(
    settings: Settings, db: Database, tmp_path: Path, inspector_key: str
) -> None:
    folder = write_rules(tmp_path / "rules", vr=RULES.replace("trip_at: 5", "trip_at: 2"))
    with app_client(settings, folder) as test_client:
        response = test_client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        rules_check = response.json()["checks"]["rules"]
        assert rules_check.startswith("not loaded")
        assert "rules check" in rules_check
        assert "trip_at" not in response.text  # an unauthenticated probe must not read the rules
        listed = test_client.get("/v1/rules", headers=bearer(inspector_key))
        assert listed.json() == {"items": [], "next_cursor": None}
        assert test_client.get("/healthz").status_code == 200


def test_a_missing_rules_folder_is_not_ready(settings: Settings, db: Database, tmp_path: Path) -> None:
    with app_client(settings, tmp_path / "absent") as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["rules"].startswith("not loaded")
