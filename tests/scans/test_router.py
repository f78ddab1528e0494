"""POST /v1/scans, GET /v1/scans and GET /v1/scans/{id}: the rules run over stored events, as inline evaluation does."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.alerts.test_router import (
    aware,
    error_locs,
    get_alert,
    is_problem,
    list_alerts,
    police,
    post_all,
    registration,
)
from tests.breakers.test_router import check, get_breaker, reset, trip
from tests.factories import bearer

SCAN_FIELDS = {
    "id",
    "trigger",
    "status",
    "rules",
    "windows",
    "events",
    "alerts_raised",
    "alerts_updated",
    "alerts_cleared",
    "breakers_tripped",
    "duration_ms",
    "from",
    "to",
}
RULE_COUNT = 3  # t-count, t-exam, t-ratio

# The alert fields a scan and inline evaluation must agree on (ids and timestamps of writing differ).
FINDING = ("rule_id", "severity", "subject_type", "domains", "window_start", "window_end", "value", "hits", "unit")


def run_scan(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/scans", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def figures(scan: dict[str, Any]) -> dict[str, int]:
    names = ("alerts_raised", "alerts_updated", "alerts_cleared", "breakers_tripped")
    return {name: scan[name] for name in names}


def nothing_changed() -> dict[str, int]:
    return {"alerts_raised": 0, "alerts_updated": 0, "alerts_cleared": 0, "breakers_tripped": 0}


def store_without_rules(bare: TestClient, key: str, operator: dict[str, Any], count: int = 4) -> list[int]:
    results = post_all(bare, key, [registration(minute, operator) for minute in range(count)])
    assert [(result["alerts"], result["blocked"]) for result in results] == [([], False)] * count
    return [result["id"] for result in results]


def list_scans(client: TestClient, key: str, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/scans", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- POST /v1/scans ----------------------------------------------------------------------------


def test_a_scan_answers_201_with_its_figures(rclient: TestClient, admin_key: str) -> None:
    before = datetime.now(UTC)
    response = rclient.post("/v1/scans", headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    scan = response.json()
    assert SCAN_FIELDS <= set(scan)
    assert (scan["trigger"], scan["status"]) == ("api", "done")
    assert scan["rules"] == RULE_COUNT
    assert (scan["events"], scan["windows"]) == (0, 0)
    assert figures(scan) == nothing_changed()
    assert (scan["from"], scan["to"]) == (None, None)
    assert isinstance(scan["id"], int)
    assert scan["duration_ms"] >= 0
    assert aware(scan["started_at"]) >= before - timedelta(seconds=1)
    assert aware(scan["finished_at"]) >= aware(scan["started_at"])
    assert scan["actor"] == "admin"


def test_a_scan_raises_what_inline_evaluation_would_have_raised(
    bare: TestClient, rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    scanned_events = store_without_rules(bare, source_key, police("OP1"))
    assert list_alerts(rclient, inspector_key) == []
    inline = post_all(rclient, source_key, [registration(minute, police("OP2")) for minute in range(4)])
    assert inline[-1]["blocked"] is True

    scan = run_scan(rclient, admin_key)

    assert (scan["status"], scan["events"], scan["rules"]) == ("done", 8, RULE_COUNT)
    assert scan["windows"] == 2  # (OP1, 09:00) and (OP2, 09:00) for t-count
    assert figures(scan) == {"alerts_raised": 1, "alerts_updated": 0, "alerts_cleared": 0, "breakers_tripped": 1}
    by_subject = {alert["subject_id"]: alert for alert in list_alerts(rclient, inspector_key)}
    assert set(by_subject) == {"OP1", "OP2"}
    scanned, inline_alert = by_subject["OP1"], by_subject["OP2"]
    assert {name: scanned[name] for name in FINDING} == {name: inline_alert[name] for name in FINDING}
    assert (scanned["value"], scanned["tripped"], scanned["stage"], scanned["cleared"]) == (4, True, "warning", False)
    assert aware(scanned["first_event_at"]) == aware(inline_alert["first_event_at"])
    assert aware(scanned["last_event_at"]) == aware(inline_alert["last_event_at"])
    evidence = get_alert(rclient, inspector_key, scanned["id"])["evidence"]
    assert evidence["event_ids"] == scanned_events
    assert (evidence["count"], evidence["value"]) == (4, 4)


def test_a_scan_trips_the_breaker_inline_evaluation_would_have_tripped(
    bare: TestClient, rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    store_without_rules(bare, source_key, police("OP1"))
    assert check(rclient, source_key).json()["allowed"] is True

    run_scan(rclient, admin_key)

    verdict = check(rclient, source_key, domain="vehicle_registration").json()
    assert verdict["allowed"] is False
    (breaker,) = verdict["breakers"]
    assert (breaker["subject_id"], breaker["rule_id"], breaker["state"]) == ("OP1", "t-count", "open")
    (alert,) = list_alerts(rclient, inspector_key)
    assert breaker["alert_id"] == alert["id"]
    later = post_all(rclient, source_key, [registration(30, police("OP1"))])[0]
    assert later["blocked"] is True


def test_a_second_scan_raises_and_updates_nothing(
    bare: TestClient, rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    store_without_rules(bare, source_key, police("OP1"))
    assert run_scan(rclient, admin_key)["alerts_raised"] == 1
    before = list_alerts(rclient, inspector_key)

    again = run_scan(rclient, admin_key)

    assert figures(again) == nothing_changed()
    assert again["events"] == 4
    assert list_alerts(rclient, inspector_key) == before


def test_a_scan_after_inline_evaluation_changes_nothing(
    rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    post_all(rclient, source_key, [registration(minute) for minute in range(4)])
    before = list_alerts(rclient, inspector_key)
    assert figures(run_scan(rclient, admin_key)) == nothing_changed()
    assert list_alerts(rclient, inspector_key) == before


def test_a_scan_updates_an_alert_with_events_stored_while_the_rule_was_absent(
    bare: TestClient, rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    post_all(rclient, source_key, [registration(minute) for minute in range(3)])
    (warning,) = list_alerts(rclient, inspector_key)
    assert (warning["value"], warning["tripped"]) == (3, False)
    post_all(bare, source_key, [registration(5, police("OP1"))])

    scan = run_scan(rclient, admin_key)

    assert figures(scan) == {"alerts_raised": 0, "alerts_updated": 1, "alerts_cleared": 0, "breakers_tripped": 1}
    (updated,) = list_alerts(rclient, inspector_key)
    assert updated["id"] == warning["id"]
    assert (updated["value"], updated["hits"], updated["tripped"]) == (4, 4, True)
    assert check(rclient, source_key).json()["allowed"] is False


def test_a_scan_does_not_reopen_a_reset_breaker(
    rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    breaker = trip(rclient, source_key)
    assert reset(rclient, inspector_key, breaker["id"]).status_code == 200

    scan = run_scan(rclient, admin_key)

    assert scan["breakers_tripped"] == 0
    assert get_breaker(rclient, inspector_key, breaker["id"])["state"] == "half_open"
    assert check(rclient, source_key).json()["allowed"] is True


def test_a_scan_covers_only_its_range(
    bare: TestClient, rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    store_without_rules(bare, source_key, police("OP1"))  # 2026-11-21 09:00 to 09:03, Asia/Shanghai

    next_day = run_scan(rclient, admin_key, **{"from": "2026-11-22T00:00:00+08:00", "to": "2026-11-23T00:00:00+08:00"})

    assert (next_day["events"], next_day["windows"]) == (0, 0)
    assert figures(next_day) == nothing_changed()
    assert aware(next_day["from"]) == datetime(2026, 11, 21, 16, tzinfo=UTC)
    assert aware(next_day["from"]).utcoffset() == timedelta(0)
    assert aware(next_day["to"]) == datetime(2026, 11, 22, 16, tzinfo=UTC)
    assert list_alerts(rclient, inspector_key) == []

    that_hour = run_scan(rclient, admin_key, **{"from": "2026-11-21T09:00:00+08:00", "to": "2026-11-21T10:00:00+08:00"})

    assert (that_hour["events"], that_hour["alerts_raised"]) == (4, 1)
    assert len(list_alerts(rclient, inspector_key)) == 1


def test_a_range_that_cuts_a_window_still_measures_the_whole_window(
    rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    post_all(rclient, source_key, [registration(minute) for minute in range(4)])  # 09:00 to 09:03
    before = list_alerts(rclient, inspector_key)
    for bound in ({"from": "2026-11-21T09:02:00+08:00"}, {"to": "2026-11-21T09:02:00+08:00"}):
        scan = run_scan(rclient, admin_key, **bound)
        assert scan["events"] == 2
        assert figures(scan) == nothing_changed()
    assert list_alerts(rclient, inspector_key) == before
    assert before[0]["value"] == 4


def test_scans_at_the_same_time_write_each_alert_once(
    bare: TestClient, rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    events = [registration(minute, police(f"OP{n}")) for n in range(10) for minute in range(4)]
    assert bare.post("/v1/events/batch", json={"events": events}, headers=bearer(source_key)).status_code == 200
    start = threading.Barrier(3)

    def scan_now(_: int) -> dict[str, Any]:
        start.wait()
        return run_scan(rclient, admin_key)

    with ThreadPoolExecutor(3) as pool:
        runs = list(pool.map(scan_now, range(3)))

    assert sum(run["alerts_raised"] for run in runs) == 10
    assert sum(run["breakers_tripped"] for run in runs) == 10
    alerts = list_alerts(rclient, inspector_key, limit=500)
    assert sorted(alert["subject_id"] for alert in alerts) == sorted(f"OP{n}" for n in range(10))
    breakers = rclient.get("/v1/breakers", params={"limit": 500}, headers=bearer(inspector_key)).json()["items"]
    assert sorted(breaker["subject_id"] for breaker in breakers) == sorted(f"OP{n}" for n in range(10))


def test_a_scan_with_no_rules_in_force_raises_nothing(bare: TestClient, source_key: str, admin_key: str) -> None:
    store_without_rules(bare, source_key, police("OP1"))
    scan = run_scan(bare, admin_key)
    assert (scan["rules"], scan["events"], scan["status"]) == (0, 4, "done")
    assert figures(scan) == nothing_changed()


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"from": "2026-11-21T09:00:00"}, ["body", "from"]),
        ({"to": "2026-11-21T09:00:00"}, ["body", "to"]),
        ({"from": "yesterday"}, ["body", "from"]),
        ({"from": 1_790_000_000}, ["body", "from"]),
        ({"from": "1999-12-31T00:00:00+08:00"}, ["body", "from"]),
        ({"since": "2026-11-21T09:00:00+08:00"}, ["body", "since"]),
    ],
)
def test_a_scan_with_a_bad_body_is_422_and_runs_nothing(
    rclient: TestClient, admin_key: str, inspector_key: str, body: dict[str, Any], loc: list[Any]
) -> None:
    response = rclient.post("/v1/scans", json=body, headers=bearer(admin_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)
    assert list_scans(rclient, inspector_key)["items"] == []


@pytest.mark.parametrize("to", ["2026-11-21T08:00:00+08:00", "2026-11-21T09:00:00+08:00"])
def test_a_scan_whose_to_is_not_after_from_is_422(
    rclient: TestClient, admin_key: str, inspector_key: str, to: str
) -> None:
    body = {"from": "2026-11-21T09:00:00+08:00", "to": to}
    response = rclient.post("/v1/scans", json=body, headers=bearer(admin_key))
    assert is_problem(response, 422)
    assert list_scans(rclient, inspector_key)["items"] == []


def test_a_scan_whose_to_is_before_from_names_to(rclient: TestClient, admin_key: str) -> None:
    body = {"from": "2026-11-21T09:00:00+08:00", "to": "2026-11-21T08:00:00+08:00"}
    response = rclient.post("/v1/scans", json=body, headers=bearer(admin_key))
    assert is_problem(response, 422)
    assert error_locs(response) == [["body", "to"]]


def test_a_scan_needs_an_admin_key(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    assert is_problem(rclient.post("/v1/scans", json={}), 401)
    assert is_problem(rclient.post("/v1/scans", json={}, headers=bearer("sv_not-a-real-key")), 401)
    assert is_problem(rclient.post("/v1/scans", json={}, headers=bearer(source_key)), 403)
    assert is_problem(rclient.post("/v1/scans", json={}, headers=bearer(inspector_key)), 403)
    assert list_scans(rclient, inspector_key)["items"] == []


# --- GET /v1/scans and GET /v1/scans/{id} ------------------------------------------------------


def test_runs_are_listed_newest_first_with_their_figures(
    bare: TestClient, rclient: TestClient, source_key: str, admin_key: str, inspector_key: str
) -> None:
    store_without_rules(bare, source_key, police("OP1"))
    first = run_scan(rclient, admin_key)
    second = run_scan(rclient, admin_key)

    listed = list_scans(rclient, inspector_key)

    assert listed["next_cursor"] is None
    assert listed["items"] == [second, first]
    assert listed["items"][1]["alerts_raised"] == 1


def test_scans_page_without_repeats(rclient: TestClient, admin_key: str, inspector_key: str) -> None:
    ran = [run_scan(rclient, admin_key)["id"] for _ in range(3)]
    seen: list[int] = []
    cursor = None
    for _ in range(len(ran) + 1):
        page = list_scans(rclient, inspector_key, limit=1, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 1
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ran, reverse=True)


def test_detail_answers_one_run(rclient: TestClient, admin_key: str, inspector_key: str) -> None:
    scan = run_scan(rclient, admin_key)
    response = rclient.get(f"/v1/scans/{scan['id']}", headers=bearer(inspector_key))
    assert response.status_code == 200
    assert response.json() == scan


def test_detail_of_an_unknown_scan_is_404(rclient: TestClient, admin_key: str, inspector_key: str) -> None:
    scan = run_scan(rclient, admin_key)
    response = rclient.get(f"/v1/scans/{scan['id'] + 1000}", headers=bearer(inspector_key))
    assert is_problem(response, 404)
    assert {"type", "title", "status", "detail"} <= set(response.json())


def test_detail_with_a_malformed_id_is_422(rclient: TestClient, inspector_key: str) -> None:
    response = rclient.get("/v1/scans/latest", headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert ["path", "scan_id"] in error_locs(response)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": "all"}, ["query", "limit"]),
        ({"cursor": "garbage"}, ["query", "cursor"]),
    ],
)
def test_list_with_bad_parameters_is_422(
    rclient: TestClient, inspector_key: str, params: dict[str, Any], loc: list[Any]
) -> None:
    response = rclient.get("/v1/scans", params=params, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)


def test_reading_scans_needs_an_inspector_key(rclient: TestClient, admin_key: str, source_key: str) -> None:
    scan = run_scan(rclient, admin_key)
    for path in ("/v1/scans", f"/v1/scans/{scan['id']}"):
        assert is_problem(rclient.get(path), 401)
        assert is_problem(rclient.get(path, headers=bearer(source_key)), 403)
