"""GET /v1/alerts and GET /v1/alerts/{id}: alerts raised by inline evaluation of the test's own rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from app.main import create_app
from tests.conftest import KeyMaker
from tests.factories import auxiliary, bearer, make_event

# Warns at 3 registrations by one operator in an hour, trips at 4.
COUNT_RULE = """\
- id: t-count
  type: count
  label_zh: 测试-单小时上户
  label_en: test - registrations in an hour
  domains: [vehicle_registration]
  filter: {action: register}
  group_by: operator
  window: 1h
  warn_at: 3
  trip_at: 4
  severity: high
  probation: 1h
"""

# A second domain and severity (no breaker), and a ratio that can fall back under warn_at (cleared alerts).
MORE_RULES = """\
- id: t-exam
  type: count
  label_zh: 测试-单日考试
  label_en: test - exams in a day
  domains: [driver_testing]
  filter: {action: exam}
  group_by: operator
  window: 1d
  warn_at: 2
  severity: medium
- id: t-ratio
  type: ratio
  label_zh: 测试-过户货车占比
  label_en: test - share of trucks among transfers
  domains: [vehicle_registration]
  filter: {action: transfer}
  numerator: {attributes.vehicle_type: truck}
  min_events: 2
  group_by: operator
  window: 1h
  warn_at: 0.5
  severity: low
"""

ALERT_FIELDS = {
    "id",
    "assignee_unit",
    "due_at",
    "rule_id",
    "severity",
    "subject_type",
    "subject_id",
    "domains",
    "window_start",
    "window_end",
    "value",
    "hits",
    "unit",
    "stage",
    "tripped",
    "cleared",
    "cleared_at",
    "overdue",
    "responsible_officer",
    "exempted",
    "exemption_id",
    "first_event_at",
    "last_event_at",
    "created_at",
    "updated_at",
}


def write_rules(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.yaml").write_text(text, encoding="utf-8")
    return folder


def app_client(settings: Settings, rules_dir: Path) -> TestClient:
    return TestClient(create_app(settings.model_copy(update={"rules_dir": rules_dir})))


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    return write_rules(tmp_path / "rules", COUNT_RULE + MORE_RULES)


@pytest.fixture
def rclient(settings: Settings, db: Database, rules_dir: Path) -> Iterator[TestClient]:
    """An app whose rules are the test rules above."""
    with app_client(settings, rules_dir) as test_client:
        yield test_client


def police(operator_id: str = "OP1", unit: str = "U1") -> dict[str, Any]:
    return {"id": operator_id, "kind": "police", "unit": unit, "responsible_officer": None}


def registration(
    minute: int, operator: dict[str, Any] | None = None, hour: int = 9, **overrides: Any
) -> dict[str, Any]:
    """A registration on 2026-11-21 at hour:minute, Asia/Shanghai time."""
    return make_event(
        operator=operator or police(), occurred_at=f"2026-11-21T{hour:02d}:{minute:02d}:00+08:00", **overrides
    )


def exam(minute: int, operator: dict[str, Any]) -> dict[str, Any]:
    return make_event(
        domain="driver_testing",
        action="exam",
        occurred_at=f"2026-11-21T14:{minute:02d}:00+08:00",
        operator=operator,
        business_unit={"id": "ES-1", "kind": "exam_site"},
        attributes={"subject": 2, "result": "pass", "score": 90},
    )


def transfer(minute: int, operator: dict[str, Any], vehicle_type: str) -> dict[str, Any]:
    return registration(minute, operator, action="transfer", attributes={"vehicle_type": vehicle_type})


def post(client: TestClient, key: str, event: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/events", json=event, headers=bearer(key))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def post_all(client: TestClient, key: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [post(client, key, event) for event in events]


def raise_alert(client: TestClient, key: str, operator: dict[str, Any] | None = None, hour: int = 9) -> int:
    """Three registrations in one hour: one warning alert; its id."""
    results = post_all(client, key, [registration(minute, operator, hour) for minute in range(3)])
    (alert_id,) = results[-1]["alerts"]
    assert isinstance(alert_id, int)
    return alert_id


def list_alerts(client: TestClient, key: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/alerts", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def alert_ids(client: TestClient, key: str, **params: Any) -> list[int]:
    return [item["id"] for item in list_alerts(client, key, **params)]


def get_alert(client: TestClient, key: str, alert_id: int) -> dict[str, Any]:
    response = client.get(f"/v1/alerts/{alert_id}", headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def aware(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, text
    return parsed


def local(text: str) -> datetime:
    """A time on 2026-11-21 in Asia/Shanghai, e.g. local("09:00")."""
    return datetime.fromisoformat(f"2026-11-21T{text}:00+08:00")


def error_locs(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["errors"]]


def is_problem(response: Any, status: int) -> bool:
    return bool(
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["status"] == status
    )


def put_unit(client: TestClient, key: str, unit_id: str, parent: str | None = None) -> None:
    body = {"parent": parent, "label_zh": unit_id, "label_en": unit_id}
    response = client.put(f"/v1/units/{unit_id}", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text


def build_units(client: TestClient, admin_key: str) -> None:
    """ZD > DD1 > U1, ZD > U2, and a separate top unit OTHER > U3."""
    for unit_id, parent in [("ZD", None), ("DD1", "ZD"), ("U1", "DD1"), ("U2", "ZD"), ("OTHER", None), ("U3", "OTHER")]:
        put_unit(client, admin_key, unit_id, parent)


@pytest.fixture
def three_alerts(rclient: TestClient, source_key: str, admin_key: str) -> dict[str, int]:
    """a1: t-count, OP1 in U1 at 09:00; a2: t-count, OP2 in U2 at 11:00; a3: t-exam, OP3 in U3, the whole day."""
    build_units(rclient, admin_key)
    a1 = raise_alert(rclient, source_key, police("OP1", "U1"), hour=9)
    a2 = raise_alert(rclient, source_key, police("OP2", "U2"), hour=11)
    results = post_all(rclient, source_key, [exam(0, police("OP3", "U3")), exam(10, police("OP3", "U3"))])
    (a3,) = results[-1]["alerts"]
    return {"a1": a1, "a2": a2, "a3": a3}


# --- raising alerts inline -----------------------------------------------------------------------


def test_events_below_warn_at_raise_no_alert(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    results = post_all(rclient, source_key, [registration(0), registration(1)])
    assert [result["alerts"] for result in results] == [[], []]
    assert list_alerts(rclient, inspector_key) == []


def test_reaching_warn_at_raises_one_warning_alert(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    results = post_all(rclient, source_key, [registration(minute) for minute in range(3)])

    assert [result["alerts"] for result in results[:2]] == [[], []]
    assert (results[2]["blocked"], results[2]["breakers"]) == (False, [])
    (alert,) = list_alerts(rclient, inspector_key)
    assert results[2]["alerts"] == [alert["id"]]
    assert set(alert) == ALERT_FIELDS
    assert alert["rule_id"] == "t-count"
    assert alert["severity"] == "high"
    assert (alert["subject_type"], alert["subject_id"]) == ("operator", "OP1")
    assert alert["domains"] == ["vehicle_registration"]
    assert aware(alert["window_start"]) == local("09:00")
    assert aware(alert["window_end"]) == local("10:00")
    assert (alert["value"], alert["hits"]) == (3, 3)
    assert alert["unit"] == "U1"
    assert alert["stage"] == "warning"
    assert (alert["tripped"], alert["cleared"], alert["cleared_at"], alert["overdue"]) == (False, False, None, False)
    assert alert["responsible_officer"] is None
    assert aware(alert["first_event_at"]) == local("09:00")
    assert aware(alert["last_event_at"]) == local("09:02")
    assert aware(alert["created_at"]) <= aware(alert["updated_at"])


def test_times_are_returned_in_utc(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    raise_alert(rclient, source_key)
    (alert,) = list_alerts(rclient, inspector_key)
    for name in ("window_start", "window_end", "first_event_at", "last_event_at", "created_at", "updated_at"):
        assert aware(alert[name]).utcoffset() == timedelta(0), name


def test_reaching_trip_at_trips_the_same_alert(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    alert_id = raise_alert(rclient, source_key)
    result = post(rclient, source_key, registration(3))
    assert result["alerts"] == [alert_id]
    assert result["blocked"] is True
    (alert,) = list_alerts(rclient, inspector_key)
    assert alert["id"] == alert_id
    assert (alert["value"], alert["hits"], alert["tripped"]) == (4, 4, True)
    assert aware(alert["last_event_at"]) == local("09:03")


def test_each_operator_and_each_window_has_its_own_alert(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    first = raise_alert(rclient, source_key, police("OP1"), hour=9)
    other_operator = raise_alert(rclient, source_key, police("OP2"), hour=9)
    next_hour = raise_alert(rclient, source_key, police("OP1"), hour=10)
    assert len({first, other_operator, next_hour}) == 3
    listed = {item["id"]: item for item in list_alerts(rclient, inspector_key)}
    assert set(listed) == {first, other_operator, next_hour}
    assert listed[next_hour]["subject_id"] == "OP1"
    assert aware(listed[next_hour]["window_start"]) == local("10:00")
    assert all(item["value"] == 3 for item in listed.values())


def test_a_late_event_updates_the_alert_of_the_window_it_happened_in(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    post_all(rclient, source_key, [registration(minute) for minute in (20, 30, 40)])
    (before,) = list_alerts(rclient, inspector_key)
    assert aware(before["first_event_at"]) == local("09:20")

    late = post(rclient, source_key, registration(10))

    assert late["alerts"] == [before["id"]]
    (after,) = list_alerts(rclient, inspector_key)
    assert after["id"] == before["id"]
    assert (after["value"], after["hits"]) == (4, 4)
    assert aware(after["first_event_at"]) == local("09:10")
    assert aware(after["last_event_at"]) == local("09:40")
    assert aware(after["window_start"]) == aware(before["window_start"])
    assert aware(after["updated_at"]) >= aware(before["updated_at"])


def test_a_late_event_of_an_earlier_hour_leaves_the_alert_alone(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    alert_id = raise_alert(rclient, source_key, hour=9)
    late = post(rclient, source_key, registration(59, hour=8))
    assert late["alerts"] == []
    (alert,) = list_alerts(rclient, inspector_key)
    assert (alert["id"], alert["value"]) == (alert_id, 3)
    assert aware(alert["first_event_at"]) == local("09:00")


def test_an_auxiliarys_alert_names_the_responsible_officer(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    helper = auxiliary(unit="U1", officer="P1001", operator_id="A2001")
    alert_id = raise_alert(rclient, source_key, helper)
    (alert,) = list_alerts(rclient, inspector_key)
    assert (alert["subject_id"], alert["responsible_officer"]) == ("A2001", "P1001")
    detail = get_alert(rclient, inspector_key, alert_id)
    assert detail["responsible_officer"] == "P1001"
    assert detail["evidence"]["responsible_officer"] == "P1001"


def test_an_alert_whose_value_falls_is_kept_as_cleared_and_comes_back(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    operator = police("OP7")
    post_all(rclient, source_key, [transfer(0, operator, "truck"), transfer(1, operator, "truck")])
    (raised,) = list_alerts(rclient, inspector_key, rule="t-ratio")
    assert (raised["value"], raised["cleared"]) == (1, False)

    result = post_all(rclient, source_key, [transfer(minute, operator, "car") for minute in (2, 3, 4)])[-1]

    assert result["alerts"] == [raised["id"]]
    (cleared,) = list_alerts(rclient, inspector_key, rule="t-ratio")
    assert cleared["id"] == raised["id"]
    assert cleared["cleared"] is True
    assert aware(cleared["cleared_at"]) >= aware(raised["created_at"])
    assert cleared["value"] == pytest.approx(0.4)

    post(rclient, source_key, transfer(5, operator, "truck"))
    (back,) = list_alerts(rclient, inspector_key, rule="t-ratio")
    assert (back["id"], back["cleared"], back["cleared_at"]) == (raised["id"], False, None)
    assert back["value"] == pytest.approx(0.5)


def test_chinese_ids_round_trip_and_filter(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    alert_id = raise_alert(rclient, source_key, police("民警张三", "常德-直属一大队"))
    (alert,) = list_alerts(rclient, inspector_key, subject="民警张三")
    assert (alert["id"], alert["subject_id"], alert["unit"]) == (alert_id, "民警张三", "常德-直属一大队")
    assert alert_ids(rclient, inspector_key, unit="常德-直属一大队") == [alert_id]


# --- GET /v1/alerts/{id} -----------------------------------------------------------------------


def test_detail_has_the_evidence_in_time_order(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    results = post_all(rclient, source_key, [registration(minute) for minute in (2, 0, 1)])
    event_ids = [result["id"] for result in results]
    (alert_id,) = results[-1]["alerts"]

    response = rclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == ALERT_FIELDS | {"evidence", "history"}
    evidence = body["evidence"]
    assert evidence["event_ids"] == [event_ids[1], event_ids[2], event_ids[0]]  # 09:00, 09:01, 09:02
    assert (evidence["count"], evidence["value"]) == (3, 3)
    assert evidence["responsible_officer"] is None
    assert body["history"] == []
    listed = list_alerts(rclient, inspector_key)
    assert {name: body[name] for name in ALERT_FIELDS} == listed[0]


def test_detail_evidence_follows_an_update(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    results = post_all(rclient, source_key, [registration(minute) for minute in (10, 20, 30, 5)])
    alert_id = results[-1]["alerts"][0]
    evidence = get_alert(rclient, inspector_key, alert_id)["evidence"]
    assert evidence["event_ids"] == [results[3]["id"], results[0]["id"], results[1]["id"], results[2]["id"]]
    assert (evidence["count"], evidence["value"]) == (4, 4)


def test_detail_carries_an_etag_that_changes_with_the_alert(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    alert_id = raise_alert(rclient, source_key)
    first = rclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key)).headers["etag"]
    again = rclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key)).headers["etag"]
    assert first.startswith('"')
    assert first.endswith('"')
    assert again == first
    post(rclient, source_key, registration(3))
    updated = rclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key)).headers["etag"]
    assert updated != first


def test_admin_may_read_alerts(rclient: TestClient, source_key: str, admin_key: str) -> None:
    alert_id = raise_alert(rclient, source_key)
    assert alert_ids(rclient, admin_key) == [alert_id]
    assert get_alert(rclient, admin_key, alert_id)["id"] == alert_id


def test_detail_of_an_unknown_alert_is_404_problem(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    alert_id = raise_alert(rclient, source_key)
    response = rclient.get(f"/v1/alerts/{alert_id + 1000}", headers=bearer(inspector_key))
    assert is_problem(response, 404)
    assert {"type", "title", "status", "detail"} <= set(response.json())


@pytest.mark.parametrize("alert_id", ["abc", "1.5"])
def test_detail_with_a_malformed_id_is_422(rclient: TestClient, inspector_key: str, alert_id: str) -> None:
    response = rclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert ["path", "alert_id"] in error_locs(response)


# --- GET /v1/alerts: filters -------------------------------------------------------------------


def test_list_is_newest_window_first(rclient: TestClient, three_alerts: dict[str, int], inspector_key: str) -> None:
    a1, a2, a3 = three_alerts["a1"], three_alerts["a2"], three_alerts["a3"]
    assert alert_ids(rclient, inspector_key) == [a2, a1, a3]  # 11:00, 09:00, the day from 00:00


def test_list_filters_by_rule(rclient: TestClient, three_alerts: dict[str, int], inspector_key: str) -> None:
    a1, a2, a3 = three_alerts["a1"], three_alerts["a2"], three_alerts["a3"]
    assert alert_ids(rclient, inspector_key, rule="t-exam") == [a3]
    assert alert_ids(rclient, inspector_key, rule="t-count") == [a2, a1]
    assert alert_ids(rclient, inspector_key, rule="no-such-rule") == []


def test_list_filters_by_subject(rclient: TestClient, three_alerts: dict[str, int], inspector_key: str) -> None:
    assert alert_ids(rclient, inspector_key, subject="OP2") == [three_alerts["a2"]]
    assert alert_ids(rclient, inspector_key, subject="OP9") == []


def test_list_filters_by_severity(rclient: TestClient, three_alerts: dict[str, int], inspector_key: str) -> None:
    assert alert_ids(rclient, inspector_key, severity="medium") == [three_alerts["a3"]]
    assert alert_ids(rclient, inspector_key, severity="high") == [three_alerts["a2"], three_alerts["a1"]]
    assert alert_ids(rclient, inspector_key, severity="low") == []


def test_list_filters_by_domain(rclient: TestClient, three_alerts: dict[str, int], inspector_key: str) -> None:
    assert alert_ids(rclient, inspector_key, domain="driver_testing") == [three_alerts["a3"]]
    assert alert_ids(rclient, inspector_key, domain="vehicle_registration") == [three_alerts["a2"], three_alerts["a1"]]
    assert alert_ids(rclient, inspector_key, domain="accident_handling") == []
    (exam_alert,) = list_alerts(rclient, inspector_key, domain="driver_testing")
    assert exam_alert["domains"] == ["driver_testing"]


def test_list_filters_by_stage(rclient: TestClient, three_alerts: dict[str, int], inspector_key: str) -> None:
    assert len(alert_ids(rclient, inspector_key, stage="warning")) == 3
    assert alert_ids(rclient, inspector_key, stage="supervision") == []


def test_list_filters_by_cleared(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    warning = raise_alert(rclient, source_key, police("OP1"))
    operator = police("OP7")
    post_all(rclient, source_key, [transfer(0, operator, "truck"), transfer(1, operator, "truck")])
    cleared = post_all(rclient, source_key, [transfer(minute, operator, "car") for minute in (2, 3, 4)])[-1]["alerts"]
    assert alert_ids(rclient, inspector_key, cleared="true") == cleared
    assert alert_ids(rclient, inspector_key, cleared="false") == [warning]


def test_from_and_to_bound_the_window_start(
    rclient: TestClient, three_alerts: dict[str, int], inspector_key: str
) -> None:
    a1, a2, a3 = three_alerts["a1"], three_alerts["a2"], three_alerts["a3"]
    at_nine, at_eleven = "2026-11-21T09:00:00+08:00", "2026-11-21T11:00:00+08:00"
    assert alert_ids(rclient, inspector_key, **{"from": at_nine}) == [a2, a1]  # from is inclusive
    assert alert_ids(rclient, inspector_key, to=at_eleven) == [a1, a3]  # to is exclusive
    assert alert_ids(rclient, inspector_key, **{"from": at_nine, "to": at_eleven}) == [a1]
    # the day's exam alert holds events at 14:00 but its window starts at midnight
    assert alert_ids(rclient, inspector_key, **{"from": "2026-11-21T09:00:01+08:00"}) == [a2]
    assert alert_ids(rclient, inspector_key, **{"from": "2026-11-21T01:00:00Z", "to": "2026-11-21T01:00:01Z"}) == [a1]


def test_an_unescaped_plus_in_the_offset_is_read_as_one(
    rclient: TestClient, three_alerts: dict[str, int], inspector_key: str
) -> None:
    response = rclient.get("/v1/alerts?from=2026-11-21T09:00:01+08:00", headers=bearer(inspector_key))
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [three_alerts["a2"]]


def test_list_filters_by_unit_and_the_units_below_it(
    rclient: TestClient, three_alerts: dict[str, int], inspector_key: str
) -> None:
    a1, a2, a3 = three_alerts["a1"], three_alerts["a2"], three_alerts["a3"]
    assert alert_ids(rclient, inspector_key, unit="ZD") == [a2, a1]
    assert alert_ids(rclient, inspector_key, unit="DD1") == [a1]
    assert alert_ids(rclient, inspector_key, unit="U2") == [a2]
    assert alert_ids(rclient, inspector_key, unit="OTHER") == [a3]
    assert alert_ids(rclient, inspector_key, unit="NO-SUCH-UNIT") == []


def test_filters_combine(rclient: TestClient, three_alerts: dict[str, int], inspector_key: str) -> None:
    assert alert_ids(rclient, inspector_key, rule="t-count", unit="DD1") == [three_alerts["a1"]]
    assert alert_ids(rclient, inspector_key, severity="high", subject="OP3") == []


# --- GET /v1/alerts: paging --------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2])
def test_paging_walks_every_alert_once(rclient: TestClient, source_key: str, inspector_key: str, limit: int) -> None:
    # Three alerts share the 09:00 window, so the order must break ties.
    raised = [raise_alert(rclient, source_key, police(f"OP{n}"), hour=9) for n in range(3)]
    raised.append(raise_alert(rclient, source_key, police("OP3"), hour=10))
    raised.append(raise_alert(rclient, source_key, police("OP4"), hour=8))
    everything = alert_ids(rclient, inspector_key)
    assert sorted(everything) == sorted(raised)

    seen: list[int] = []
    cursor = None
    for _ in range(len(raised) + 1):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = rclient.get("/v1/alerts", params=params, headers=bearer(inspector_key))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert cursor is None, "paging does not end"
    assert seen == everything


def test_paging_keeps_the_filters(rclient: TestClient, three_alerts: dict[str, int], inspector_key: str) -> None:
    first = rclient.get("/v1/alerts", params={"limit": 1, "rule": "t-count"}, headers=bearer(inspector_key)).json()
    assert [item["id"] for item in first["items"]] == [three_alerts["a2"]]
    params = {"limit": 1, "rule": "t-count", "cursor": first["next_cursor"]}
    second = rclient.get("/v1/alerts", params=params, headers=bearer(inspector_key)).json()
    assert [item["id"] for item in second["items"]] == [three_alerts["a1"]]
    assert second["next_cursor"] is None


def test_an_empty_list_has_no_cursor(rclient: TestClient, inspector_key: str) -> None:
    response = rclient.get("/v1/alerts", headers=bearer(inspector_key))
    assert response.json() == {"items": [], "next_cursor": None}


# --- GET /v1/alerts: bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": "many"}, ["query", "limit"]),
        ({"cursor": "garbage"}, ["query", "cursor"]),
        ({"from": "2026-11-21T09:00:00"}, ["query", "from"]),
        ({"to": "2026-11-21T09:00:00"}, ["query", "to"]),
        ({"from": "yesterday"}, ["query", "from"]),
        ({"from": "2026-11-21T10:00:00+08:00", "to": "2026-11-21T09:00:00+08:00"}, ["query", "to"]),
        ({"stage": "review"}, ["query", "stage"]),
        ({"severity": "extreme"}, ["query", "severity"]),
        ({"domain": "parking"}, ["query", "domain"]),
        ({"cleared": "perhaps"}, ["query", "cleared"]),
    ],
)
def test_list_with_bad_parameters_is_422(
    rclient: TestClient, inspector_key: str, params: dict[str, Any], loc: list[Any]
) -> None:
    response = rclient.get("/v1/alerts", params=params, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)


def test_a_cursor_of_another_list_is_422(rclient: TestClient, admin_key: str, inspector_key: str) -> None:
    for unit_id in ("A", "B"):
        put_unit(rclient, admin_key, unit_id)
    units_cursor = rclient.get("/v1/units", params={"limit": 1}, headers=bearer(inspector_key)).json()["next_cursor"]
    assert units_cursor is not None
    response = rclient.get("/v1/alerts", params={"cursor": units_cursor}, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert error_locs(response) == [["query", "cursor"]]


def test_the_largest_limit_is_accepted(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    alert_id = raise_alert(rclient, source_key)
    assert alert_ids(rclient, inspector_key, limit=500) == [alert_id]


# --- who may read ------------------------------------------------------------------------------


def test_reading_alerts_needs_a_key(rclient: TestClient, source_key: str) -> None:
    alert_id = raise_alert(rclient, source_key)
    for path in ("/v1/alerts", f"/v1/alerts/{alert_id}"):
        assert is_problem(rclient.get(path), 401)
        assert is_problem(rclient.get(path, headers=bearer("sv_not-a-real-key")), 401)


def test_a_source_key_may_not_read_alerts(rclient: TestClient, source_key: str) -> None:
    alert_id = raise_alert(rclient, source_key)
    for path in ("/v1/alerts", f"/v1/alerts/{alert_id}"):
        assert is_problem(rclient.get(path, headers=bearer(source_key)), 403)


def test_a_scoped_inspector_sees_only_alerts_of_its_units(
    rclient: TestClient, three_alerts: dict[str, int], make_key: KeyMaker
) -> None:
    a1, a2, a3 = three_alerts["a1"], three_alerts["a2"], three_alerts["a3"]
    brigade = make_key("inspector", "dd1-inspector", unit="DD1")
    detachment = make_key("inspector", "zd-inspector", unit="ZD")

    assert alert_ids(rclient, brigade) == [a1]
    assert alert_ids(rclient, detachment) == [a2, a1]
    assert get_alert(rclient, brigade, a1)["id"] == a1
    for outside in (a2, a3):
        assert is_problem(rclient.get(f"/v1/alerts/{outside}", headers=bearer(brigade)), 404)


def test_a_scoped_inspector_filtering_by_unit_sees_the_alerts_in_both(
    rclient: TestClient, three_alerts: dict[str, int], make_key: KeyMaker
) -> None:
    brigade = make_key("inspector", "dd1-inspector", unit="DD1")
    assert alert_ids(rclient, brigade, unit="ZD") == [three_alerts["a1"]]  # a filter never widens the scope
    assert alert_ids(rclient, brigade, unit="U1") == [three_alerts["a1"]]
    assert alert_ids(rclient, brigade, unit="OTHER") == []


def test_a_scoped_inspector_pages_within_its_units(
    rclient: TestClient, source_key: str, admin_key: str, make_key: KeyMaker
) -> None:
    build_units(rclient, admin_key)
    inside = [raise_alert(rclient, source_key, police(f"IN{n}", "U1"), hour=9 + n) for n in range(3)]
    for n in range(3):
        raise_alert(rclient, source_key, police(f"OUT{n}", "U3"), hour=9 + n)
    scoped = make_key("inspector", "dd1-inspector", unit="DD1")
    seen: list[int] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = rclient.get("/v1/alerts", params=params, headers=bearer(scoped)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(inside))
