"""Breakers (阈值熔断): tripped by events, GET /v1/breakers, GET /v1/breakers/check, GET /v1/breakers/{id} and
POST /v1/breakers/{id}/reset."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
    aware,
    build_units,
    error_locs,
    is_problem,
    police,
    post,
    post_all,
    registration,
    write_rules,
)
from tests.conftest import KeyMaker
from tests.factories import bearer, make_event

BREAKER_FIELDS = {
    "id",
    "kind",
    "suspended_until",
    "subject_type",
    "subject_id",
    "domains",
    "state",
    "rule_id",
    "alert_id",
    "opened_at",
    "reset_at",
    "probation_until",
}


@pytest.fixture
def rclient(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    """An app whose rules are the alerts tests' rules (t-count warns at 3 and trips at 4, probation 1h)."""
    with app_client(settings, write_rules(tmp_path / "rules", COUNT_RULE + MORE_RULES)) as test_client:
        yield test_client


def now() -> datetime:
    return datetime.now(UTC)


def trip(client: TestClient, key: str, operator: dict[str, Any] | None = None, hour: int = 9) -> dict[str, Any]:
    """Four registrations in one hour: the 4th trips t-count; the breaker the 4th event's answer lists."""
    results = post_all(client, key, [registration(minute, operator, hour) for minute in range(4)])
    (breaker,) = results[-1]["breakers"]
    assert isinstance(breaker, dict)
    return breaker


def list_breakers(client: TestClient, key: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/breakers", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def get_breaker(client: TestClient, key: str, breaker_id: int) -> dict[str, Any]:
    response = client.get(f"/v1/breakers/{breaker_id}", headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def check(client: TestClient, key: str, subject_id: str = "OP1", **params: Any) -> Any:
    params = {"subject_type": "operator", "subject_id": subject_id, **params}
    return client.get("/v1/breakers/check", params=params, headers=bearer(key))


def reset(client: TestClient, key: str, breaker_id: int, reason: str = "核查属实，已整改") -> Any:
    return client.post(f"/v1/breakers/{breaker_id}/reset", json={"reason": reason}, headers=bearer(key))


# --- tripping ----------------------------------------------------------------------------------


def test_reaching_trip_at_opens_a_breaker_and_blocks_the_event(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    before = now()
    results = post_all(rclient, source_key, [registration(minute) for minute in range(4)])

    assert [(result["blocked"], result["breakers"]) for result in results[:3]] == [(False, [])] * 3
    last = results[3]
    assert last["blocked"] is True
    (breaker,) = last["breakers"]
    assert set(breaker) == BREAKER_FIELDS
    assert (breaker["subject_type"], breaker["subject_id"]) == ("operator", "OP1")
    assert breaker["domains"] == ["vehicle_registration"]
    assert breaker["state"] == "open"
    assert breaker["rule_id"] == "t-count"
    assert [breaker["alert_id"]] == last["alerts"]
    assert before - timedelta(seconds=1) <= aware(breaker["opened_at"]) <= now() + timedelta(seconds=1)
    assert (breaker["reset_at"], breaker["probation_until"]) == (None, None)
    alert = rclient.get(f"/v1/alerts/{breaker['alert_id']}", headers=bearer(inspector_key)).json()
    assert alert["tripped"] is True


def test_the_tripped_breaker_is_listed_as_open(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    assert list_breakers(rclient, inspector_key, state="open") == [breaker]
    assert list_breakers(rclient, inspector_key) == [breaker]
    assert list_breakers(rclient, inspector_key, state="half_open") == []
    assert list_breakers(rclient, inspector_key, state="closed") == []


def test_detail_shows_the_trip_in_the_history(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    body = get_breaker(rclient, inspector_key, breaker["id"])
    assert {name: body[name] for name in BREAKER_FIELDS} == breaker
    (entry,) = body["history"]
    assert {"action", "from", "to", "actor", "at", "reason"} <= set(entry)
    assert (entry["action"], entry["from"], entry["to"]) == ("trip", "closed", "open")
    assert entry["alert_id"] == breaker["alert_id"]
    assert entry["actor"]
    assert "t-count" in entry["reason"]
    assert aware(entry["at"]) == aware(breaker["opened_at"])


def test_warnings_alone_open_no_breaker(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    results = post_all(rclient, source_key, [registration(minute) for minute in range(3)])
    assert results[-1]["alerts"]
    assert results[-1]["blocked"] is False
    assert list_breakers(rclient, inspector_key) == []
    assert check(rclient, source_key).json() == {"allowed": True, "breakers": []}


def test_a_blocked_subjects_events_are_still_stored(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    result = post(rclient, source_key, registration(30))
    assert result["blocked"] is True
    assert [b["id"] for b in result["breakers"]] == [breaker["id"]]
    stored = rclient.get(f"/v1/events/{result['id']}", headers=bearer(inspector_key))
    assert stored.status_code == 200
    assert stored.json()["operator"]["id"] == "OP1"


def test_a_breaker_blocks_only_its_subject_and_its_domains(rclient: TestClient, source_key: str) -> None:
    trip(rclient, source_key, police("OP1"))
    other_operator = post(rclient, source_key, registration(30, police("OP2")))
    assert (other_operator["blocked"], other_operator["breakers"]) == (False, [])
    other_domain = make_event(
        domain="violation_handling",
        action="penalty_issued",
        occurred_at="2026-11-21T09:30:00+08:00",
        operator=police("OP1"),
        attributes={"fine_amount": 200, "points": 3},
    )
    answer = post(rclient, source_key, other_domain)
    assert (answer["blocked"], answer["breakers"]) == (False, [])


# --- GET /v1/breakers/check --------------------------------------------------------------------


def test_check_refuses_a_tripped_subject_in_its_domain(rclient: TestClient, source_key: str) -> None:
    breaker = trip(rclient, source_key)
    response = check(rclient, source_key, domain="vehicle_registration")
    assert response.status_code == 200
    assert response.json() == {"allowed": False, "breakers": [breaker]}
    assert check(rclient, source_key).json() == {"allowed": False, "breakers": [breaker]}  # any domain


def test_check_allows_another_subject_or_another_domain(rclient: TestClient, source_key: str) -> None:
    trip(rclient, source_key)
    allowed = {"allowed": True, "breakers": []}
    assert check(rclient, source_key, "OP2", domain="vehicle_registration").json() == allowed
    assert check(rclient, source_key, "OP1", domain="driver_testing").json() == allowed
    assert check(rclient, source_key, "OP1", subject_type="business_unit").json() == allowed


def test_inspectors_and_admins_may_check(
    rclient: TestClient, source_key: str, inspector_key: str, admin_key: str
) -> None:
    trip(rclient, source_key)
    for key in (inspector_key, admin_key):
        assert check(rclient, key).json()["allowed"] is False


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"subject_id": "OP1"}, ["query", "subject_type"]),
        ({"subject_type": "citizen", "subject_id": "OP1"}, ["query", "subject_type"]),
        ({"subject_type": "operator"}, ["query", "subject_id"]),
        ({"subject_type": "operator", "subject_id": ""}, ["query", "subject_id"]),
        ({"subject_type": "operator", "subject_id": "OP1", "domain": "parking"}, ["query", "domain"]),
    ],
)
def test_check_with_bad_parameters_is_422(
    rclient: TestClient, source_key: str, params: dict[str, Any], loc: list[Any]
) -> None:
    response = rclient.get("/v1/breakers/check", params=params, headers=bearer(source_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)


def test_check_needs_a_key(rclient: TestClient) -> None:
    params = {"subject_type": "operator", "subject_id": "OP1"}
    assert is_problem(rclient.get("/v1/breakers/check", params=params), 401)
    assert is_problem(rclient.get("/v1/breakers/check", params=params, headers=bearer("sv_not-a-real-key")), 401)


# --- POST /v1/breakers/{id}/reset --------------------------------------------------------------


def test_reset_puts_the_breaker_on_probation(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    before = now()

    response = reset(rclient, inspector_key, breaker["id"], "核查属实，已整改")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == breaker["id"]
    assert body["state"] == "half_open"
    reset_at = aware(body["reset_at"])
    assert before - timedelta(seconds=1) <= reset_at <= now() + timedelta(seconds=1)
    assert aware(body["probation_until"]) == reset_at + timedelta(hours=1)  # the rule's probation
    assert aware(body["opened_at"]) == aware(breaker["opened_at"])
    trip_entry, reset_entry = body["history"]
    assert (trip_entry["action"], trip_entry["to"]) == ("trip", "open")
    assert (reset_entry["action"], reset_entry["from"], reset_entry["to"]) == ("reset", "open", "half_open")
    assert reset_entry["actor"] == "inspector-wang"
    assert reset_entry["reason"] == "核查属实，已整改"
    assert aware(reset_entry["at"]) == reset_at
    assert get_breaker(rclient, inspector_key, breaker["id"]) == body


def test_an_admin_may_reset(rclient: TestClient, source_key: str, admin_key: str) -> None:
    breaker = trip(rclient, source_key)
    response = reset(rclient, admin_key, breaker["id"])
    assert response.status_code == 200
    assert response.json()["history"][-1]["actor"] == "admin"


def test_resetting_a_half_open_breaker_is_409(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    assert reset(rclient, inspector_key, breaker["id"]).status_code == 200
    response = reset(rclient, inspector_key, breaker["id"], "again")
    assert is_problem(response, 409)
    after = get_breaker(rclient, inspector_key, breaker["id"])
    assert after["state"] == "half_open"
    assert [entry["action"] for entry in after["history"]] == ["trip", "reset"]


def test_a_half_open_breaker_lets_business_flow(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    reset(rclient, inspector_key, breaker["id"])

    assert check(rclient, source_key, domain="vehicle_registration").json() == {"allowed": True, "breakers": []}
    result = post(rclient, source_key, registration(0, hour=11))  # one event of a new hour: no trip
    assert (result["blocked"], result["breakers"]) == (False, [])
    assert [b["id"] for b in list_breakers(rclient, inspector_key, state="half_open")] == [breaker["id"]]
    assert list_breakers(rclient, inspector_key, state="open") == []


def test_a_new_event_in_the_tripped_window_reopens_a_half_open_breaker(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    breaker = trip(rclient, source_key)
    reset(rclient, inspector_key, breaker["id"])

    result = post(rclient, source_key, registration(30))

    assert result["blocked"] is True
    (reopened,) = result["breakers"]
    assert (reopened["id"], reopened["state"], reopened["probation_until"]) == (breaker["id"], "open", None)
    assert check(rclient, source_key).json()["allowed"] is False
    history = get_breaker(rclient, inspector_key, breaker["id"])["history"]
    assert [(entry["action"], entry["from"], entry["to"]) for entry in history] == [
        ("trip", "closed", "open"),
        ("reset", "open", "half_open"),
        ("trip", "half_open", "open"),
    ]


def test_reaching_trip_at_again_in_a_new_hour_reopens_it(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    breaker = trip(rclient, source_key, hour=9)
    reset(rclient, inspector_key, breaker["id"])

    results = post_all(rclient, source_key, [registration(minute, hour=10) for minute in range(4)])

    assert [result["blocked"] for result in results] == [False, False, False, True]
    (reopened,) = results[3]["breakers"]
    assert (reopened["id"], reopened["state"]) == (breaker["id"], "open")
    assert reopened["alert_id"] == results[3]["alerts"][0] != breaker["alert_id"]  # the 10:00 alert
    assert [entry["action"] for entry in get_breaker(rclient, inspector_key, breaker["id"])["history"]] == [
        "trip",
        "reset",
        "trip",
    ]
    assert reset(rclient, inspector_key, breaker["id"]).status_code == 200  # open again, so it can be reset again


def test_after_probation_the_breaker_reads_closed_and_cannot_be_reset(
    settings: Settings, db: Database, tmp_path: Path, source_key: str, inspector_key: str
) -> None:
    folder = write_rules(tmp_path / "short", COUNT_RULE.replace("probation: 1h", "probation: 1s"))
    with app_client(settings, folder) as client:
        breaker = trip(client, source_key)
        assert reset(client, inspector_key, breaker["id"]).status_code == 200
        time.sleep(1.2)
        assert get_breaker(client, inspector_key, breaker["id"])["state"] == "closed"
        assert [b["id"] for b in list_breakers(client, inspector_key, state="closed")] == [breaker["id"]]
        assert list_breakers(client, inspector_key, state="half_open") == []
        assert is_problem(reset(client, inspector_key, breaker["id"]), 409)
        result = post(client, source_key, registration(30))  # a new trip after probation opens it again
        assert [b["id"] for b in result["breakers"]] == [breaker["id"]]
        assert get_breaker(client, inspector_key, breaker["id"])["history"][-1]["from"] == "closed"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body", "reason"]),
        ({"reason": ""}, ["body", "reason"]),
        ({"reason": "   "}, ["body", "reason"]),
        ({"reason": 42}, ["body", "reason"]),
        ({"reason": "ok", "force": True}, ["body", "force"]),
    ],
)
def test_reset_with_a_bad_body_is_422_and_leaves_it_open(
    rclient: TestClient, source_key: str, inspector_key: str, body: dict[str, Any], loc: list[Any]
) -> None:
    breaker = trip(rclient, source_key)
    response = rclient.post(f"/v1/breakers/{breaker['id']}/reset", json=body, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)
    assert get_breaker(rclient, inspector_key, breaker["id"])["state"] == "open"


def test_reset_without_a_body_is_422(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    response = rclient.post(f"/v1/breakers/{breaker['id']}/reset", headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert get_breaker(rclient, inspector_key, breaker["id"])["state"] == "open"


def test_reset_of_an_unknown_breaker_is_404(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    assert is_problem(reset(rclient, inspector_key, breaker["id"] + 1000), 404)


def test_reset_needs_an_inspector_key(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    breaker = trip(rclient, source_key)
    path = f"/v1/breakers/{breaker['id']}/reset"
    assert is_problem(rclient.post(path, json={"reason": "ok"}), 401)
    assert is_problem(rclient.post(path, json={"reason": "ok"}, headers=bearer(source_key)), 403)
    assert get_breaker(rclient, inspector_key, breaker["id"])["state"] == "open"


# --- GET /v1/breakers and GET /v1/breakers/{id} ------------------------------------------------


def test_detail_of_an_unknown_breaker_is_404(rclient: TestClient, inspector_key: str) -> None:
    response = rclient.get("/v1/breakers/12345", headers=bearer(inspector_key))
    assert is_problem(response, 404)
    assert {"type", "title", "status", "detail"} <= set(response.json())


def test_detail_with_a_malformed_id_is_422(rclient: TestClient, inspector_key: str) -> None:
    response = rclient.get("/v1/breakers/first", headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert ["path", "breaker_id"] in error_locs(response)


def test_list_pages_newest_first_without_repeats(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    tripped = [trip(rclient, source_key, police(f"OP{n}"))["id"] for n in range(3)]
    seen: list[int] = []
    cursor = None
    for _ in range(len(tripped) + 1):
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = rclient.get("/v1/breakers", params=params, headers=bearer(inspector_key))
        assert response.status_code == 200, response.text
        seen += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(tripped, reverse=True)


def test_list_filters_by_subject(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    trip(rclient, source_key, police("OP1"))
    second = trip(rclient, source_key, police("OP2"))
    assert list_breakers(rclient, inspector_key, subject_type="operator", subject_id="OP2") == [second]
    assert list_breakers(rclient, inspector_key, subject_type="business_unit") == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"state": "broken"}, ["query", "state"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"cursor": "garbage"}, ["query", "cursor"]),
    ],
)
def test_list_with_bad_parameters_is_422(
    rclient: TestClient, inspector_key: str, params: dict[str, Any], loc: list[Any]
) -> None:
    response = rclient.get("/v1/breakers", params=params, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)


def test_reading_breakers_needs_an_inspector_key(rclient: TestClient, source_key: str) -> None:
    breaker = trip(rclient, source_key)
    for path in ("/v1/breakers", f"/v1/breakers/{breaker['id']}"):
        assert is_problem(rclient.get(path), 401)
        assert is_problem(rclient.get(path, headers=bearer(source_key)), 403)


def test_a_scoped_inspector_sees_and_resets_only_its_units_breakers(
    rclient: TestClient, source_key: str, admin_key: str, inspector_key: str, make_key: KeyMaker
) -> None:
    build_units(rclient, admin_key)
    inside = trip(rclient, source_key, police("OP1", "U1"))
    outside = trip(rclient, source_key, police("OP3", "U3"))
    scoped = make_key("inspector", "dd1-inspector", unit="DD1")

    assert [b["id"] for b in list_breakers(rclient, scoped)] == [inside["id"]]
    assert is_problem(rclient.get(f"/v1/breakers/{outside['id']}", headers=bearer(scoped)), 404)
    assert is_problem(reset(rclient, scoped, outside["id"]), 404)
    assert get_breaker(rclient, inspector_key, outside["id"])["state"] == "open"
    assert reset(rclient, scoped, inside["id"]).status_code == 200
