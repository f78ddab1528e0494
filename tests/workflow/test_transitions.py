"""POST /v1/alerts/{id}/transitions: 预警 → 提级督办 → 警示约谈 → 追责问责, closure, fields, If-Match, suspension."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from tests.conftest import KeyMaker
from tests.factories import bearer
from tests.workflow.support import (
    ASSIGNEE,
    aware,
    error_locs,
    in_seconds,
    inspection,
    is_problem,
    move,
    police,
    post_event,
    put_unit,
    raise_operator_alert,
    raise_station_alert,
    read_alert,
    registration,
)

OPEN_TARGETS = ["supervision", "interview", "accountability", "closed", "dismissed"]
PEOPLE_OUTCOMES = ["criticism", "warning", "demerit", "dismissal", "transferred_to_discipline"]


def supervision_fields(seconds: float = 7 * 86400) -> dict[str, Any]:
    return {"assignee_unit": ASSIGNEE, "due_at": in_seconds(seconds)}


INTERVIEW_FIELDS: dict[str, Any] = {
    "interviewees": ["OP1", "P1001"],
    "level": "discipline",
    "held_at": "2026-11-25T15:00:00+08:00",
    "summary": "约谈民警，说明批量上户情况",
}


def ok(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- the walk ----------------------------------------------------------------------------------


def test_an_alert_walks_through_every_stage_to_closed(
    wclient: TestClient, alert_id: int, inspector_key: str, admin_key: str
) -> None:
    _, etag = read_alert(wclient, inspector_key, alert_id)
    etags = [etag]
    due_at = in_seconds(7 * 86400)

    # 预警 → 提级督办, by the inspector
    response = move(wclient, inspector_key, alert_id, "supervision", "提级督办", assignee_unit=ASSIGNEE, due_at=due_at)
    body = ok(response)
    etags.append(response.headers["etag"])
    assert body["stage"] == "supervision"
    assert (body["assignee_unit"], aware(body["due_at"])) == (ASSIGNEE, aware(due_at))
    assert body["overdue"] is False
    (entry,) = body["history"]
    assert {k: entry[k] for k in ("from", "to", "actor", "reason")} == {
        "from": "warning",
        "to": "supervision",
        "actor": "inspector-wang",
        "reason": "提级督办",
    }
    assert set(entry["details"]) == {"assignee_unit", "due_at"}
    assert entry["details"]["assignee_unit"] == ASSIGNEE
    assert aware(entry["details"]["due_at"]) == aware(due_at)
    assert aware(entry["at"]) <= datetime.now(UTC)

    # 提级督办 → 警示约谈, by the admin
    response = move(wclient, admin_key, alert_id, "interview", "警示约谈", **INTERVIEW_FIELDS)
    body = ok(response)
    etags.append(response.headers["etag"])
    assert body["stage"] == "interview"
    assert body["overdue"] is False
    entry = body["history"][1]
    assert (entry["from"], entry["to"], entry["actor"], entry["reason"]) == (
        "supervision",
        "interview",
        "admin",
        "警示约谈",
    )
    assert {k: v for k, v in entry["details"].items() if k != "held_at"} == {
        "interviewees": ["OP1", "P1001"],
        "level": "discipline",
        "summary": "约谈民警，说明批量上户情况",
    }
    assert aware(entry["details"]["held_at"]) == aware(INTERVIEW_FIELDS["held_at"])

    # 警示约谈 → 追责问责
    response = move(wclient, inspector_key, alert_id, "accountability", "追责问责", outcome="demerit")
    body = ok(response)
    etags.append(response.headers["etag"])
    assert body["stage"] == "accountability"
    entry = body["history"][2]
    assert (entry["from"], entry["to"], entry["actor"]) == ("interview", "accountability", "inspector-wang")
    assert entry["details"] == {"outcome": "demerit"}

    # 追责问责 → 办结
    response = move(wclient, inspector_key, alert_id, "closed", "办结")
    body = ok(response)
    etags.append(response.headers["etag"])
    assert body["stage"] == "closed"
    entry = body["history"][3]
    assert (entry["from"], entry["to"], entry["reason"], entry["details"]) == ("accountability", "closed", "办结", {})

    assert len(set(etags)) == len(etags) == 5
    assert [(e["from"], e["to"]) for e in body["history"]] == [
        ("warning", "supervision"),
        ("supervision", "interview"),
        ("interview", "accountability"),
        ("accountability", "closed"),
    ]
    times = [aware(e["at"]) for e in body["history"]]
    assert times == sorted(times)

    detail, etag = read_alert(wclient, inspector_key, alert_id)
    assert etag == etags[-1]
    assert detail["history"] == body["history"]
    assert detail["stage"] == "closed"
    # the supervision's assignment stays on record after the alert moved on
    assert detail["assignee_unit"] == ASSIGNEE


@pytest.mark.parametrize("final", ["closed", "dismissed"])
@pytest.mark.parametrize("target", [*OPEN_TARGETS, "warning"])
def test_a_final_stage_refuses_every_move(
    wclient: TestClient, alert_id: int, inspector_key: str, final: str, target: str
) -> None:
    ok(move(wclient, inspector_key, alert_id, final))
    _, etag = read_alert(wclient, inspector_key, alert_id)

    response = move(wclient, inspector_key, alert_id, target)

    assert is_problem(response, 409)
    assert response.json()["allowed"] == []
    detail, after = read_alert(wclient, inspector_key, alert_id)
    assert (detail["stage"], after, len(detail["history"])) == (final, etag, 1)


def test_a_stage_may_be_skipped(wclient: TestClient, alert_id: int, inspector_key: str) -> None:
    body = ok(move(wclient, inspector_key, alert_id, "accountability", "直接追责", outcome="criticism"))
    assert body["stage"] == "accountability"
    (entry,) = body["history"]
    assert (entry["from"], entry["to"], entry["details"]) == ("warning", "accountability", {"outcome": "criticism"})
    assert (body["assignee_unit"], body["due_at"]) == (None, None)


def test_a_warning_may_be_dismissed(wclient: TestClient, alert_id: int, inspector_key: str) -> None:
    body = ok(move(wclient, inspector_key, alert_id, "dismissed", "核实为正常业务，误报"))
    assert body["stage"] == "dismissed"
    (entry,) = body["history"]
    assert (entry["from"], entry["to"], entry["actor"], entry["reason"], entry["details"]) == (
        "warning",
        "dismissed",
        "inspector-wang",
        "核实为正常业务，误报",
        {},
    )


@pytest.mark.parametrize("final", ["closed", "dismissed"])
def test_supervision_and_interview_may_end_at_once(
    wclient: TestClient, alert_id: int, inspector_key: str, final: str
) -> None:
    ok(move(wclient, inspector_key, alert_id, "supervision", **supervision_fields()))
    ok(move(wclient, inspector_key, alert_id, "interview", **INTERVIEW_FIELDS))
    body = ok(move(wclient, inspector_key, alert_id, final))
    assert body["stage"] == final
    assert body["history"][-1]["from"] == "interview"


@pytest.mark.parametrize(
    ("path", "target", "allowed"),
    [
        ([], "warning", OPEN_TARGETS),
        (["supervision"], "warning", ["interview", "accountability", "closed", "dismissed"]),
        (["supervision"], "supervision", ["interview", "accountability", "closed", "dismissed"]),
        (["supervision", "interview"], "supervision", ["accountability", "closed", "dismissed"]),
        (["supervision", "interview"], "warning", ["accountability", "closed", "dismissed"]),
        (["interview"], "interview", ["accountability", "closed", "dismissed"]),
        (["accountability"], "interview", ["closed", "dismissed"]),
        (["accountability"], "supervision", ["closed", "dismissed"]),
        (["accountability"], "accountability", ["closed", "dismissed"]),
    ],
)
def test_moving_back_or_staying_is_409_with_the_allowed_targets(
    wclient: TestClient, alert_id: int, inspector_key: str, path: list[str], target: str, allowed: list[str]
) -> None:
    fields: dict[str, dict[str, Any]] = {
        "supervision": supervision_fields(),
        "interview": INTERVIEW_FIELDS,
        "accountability": {"outcome": "warning"},
    }
    for stage in path:
        ok(move(wclient, inspector_key, alert_id, stage, **fields[stage]))
    before, etag = read_alert(wclient, inspector_key, alert_id)

    response = move(wclient, inspector_key, alert_id, target, **fields.get(target, {}))

    assert is_problem(response, 409)
    assert response.json()["allowed"] == allowed
    after, unchanged = read_alert(wclient, inspector_key, alert_id)
    assert (after["stage"], after["history"], unchanged) == (before["stage"], before["history"], etag)


# --- fields ------------------------------------------------------------------------------------

# (target, the body's fields besides `to` and `reason`, the locs named)
PERSON_FIELD_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # supervision
    ("supervision", {"due_at": "+7d"}, ["assignee_unit"]),
    ("supervision", {"assignee_unit": ASSIGNEE}, ["due_at"]),
    ("supervision", {}, ["assignee_unit", "due_at"]),
    ("supervision", {"assignee_unit": "NO-SUCH-UNIT", "due_at": "+7d"}, ["assignee_unit"]),
    ("supervision", {"assignee_unit": ASSIGNEE, "due_at": "2026-12-01T09:00:00"}, ["due_at"]),
    ("supervision", {"assignee_unit": ASSIGNEE, "due_at": "next week"}, ["due_at"]),
    ("supervision", {"assignee_unit": ASSIGNEE, "due_at": 1893456000}, ["due_at"]),
    ("supervision", {"assignee_unit": ASSIGNEE, "due_at": "2100-06-01T00:00:00+00:00"}, ["due_at"]),
    ("supervision", {"assignee_unit": " DD1", "due_at": "+7d"}, ["assignee_unit"]),
    ("supervision", {"assignee_unit": ASSIGNEE, "due_at": "+7d", "level": "unit"}, ["level"]),
    ("supervision", {"assignee_unit": ASSIGNEE, "due_at": "+7d", "outcome": "criticism"}, ["outcome"]),
    ("supervision", {"assignee_unit": ASSIGNEE, "due_at": "+7d", "summary": "x"}, ["summary"]),
    # interview
    ("interview", {k: v for k, v in INTERVIEW_FIELDS.items() if k != "interviewees"}, ["interviewees"]),
    ("interview", {k: v for k, v in INTERVIEW_FIELDS.items() if k != "level"}, ["level"]),
    ("interview", {k: v for k, v in INTERVIEW_FIELDS.items() if k != "held_at"}, ["held_at"]),
    ("interview", {k: v for k, v in INTERVIEW_FIELDS.items() if k != "summary"}, ["summary"]),
    ("interview", {}, ["interviewees", "level", "held_at", "summary"]),
    ("interview", {**INTERVIEW_FIELDS, "interviewees": []}, ["interviewees"]),
    ("interview", {**INTERVIEW_FIELDS, "interviewees": "OP1"}, ["interviewees"]),
    ("interview", {**INTERVIEW_FIELDS, "level": "district"}, ["level"]),
    ("interview", {**INTERVIEW_FIELDS, "held_at": "2026-11-25T15:00:00"}, ["held_at"]),
    ("interview", {**INTERVIEW_FIELDS, "summary": ""}, ["summary"]),
    ("interview", {**INTERVIEW_FIELDS, "assignee_unit": ASSIGNEE}, ["assignee_unit"]),
    ("interview", {**INTERVIEW_FIELDS, "due_at": "+7d"}, ["due_at"]),
    ("interview", {**INTERVIEW_FIELDS, "suspension_days": 3}, ["suspension_days"]),
    # accountability, on a person
    ("accountability", {}, ["outcome"]),
    ("accountability", {"outcome": "fine"}, ["outcome"]),
    ("accountability", {"outcome": "suspension", "suspension_days": 3}, ["outcome"]),
    ("accountability", {"outcome": "demerit", "suspension_days": 3}, ["suspension_days"]),
    ("accountability", {"outcome": "demerit", "level": "unit"}, ["level"]),
    ("accountability", {"outcome": "demerit", "held_at": "2026-11-25T15:00:00+08:00"}, ["held_at"]),
    # closure takes no fields
    ("closed", {"assignee_unit": ASSIGNEE}, ["assignee_unit"]),
    ("closed", {"outcome": "criticism"}, ["outcome"]),
    ("dismissed", {"interviewees": ["OP1"]}, ["interviewees"]),
    ("dismissed", {"due_at": "+7d"}, ["due_at"]),
    # any target
    ("supervision", {"assignee_unit": ASSIGNEE, "due_at": "+7d", "priority": "high"}, ["priority"]),
]


def resolve(fields: dict[str, Any]) -> dict[str, Any]:
    """Relative due times ("+7d", "-60s") made absolute now, so a case is valid whenever it runs."""
    out = dict(fields)
    due = out.get("due_at")
    if isinstance(due, str) and due[0] in "+-":
        amount, unit = float(due[:-1]), due[-1]
        out["due_at"] = in_seconds(amount * {"s": 1, "d": 86400}[unit])
    return out


@pytest.mark.parametrize(
    ("target", "fields", "names"),
    PERSON_FIELD_CASES,
    ids=[f"{target}-{'+'.join(names)}-{n}" for n, (target, _, names) in enumerate(PERSON_FIELD_CASES)],
)
def test_a_missing_extra_or_invalid_field_is_422_naming_it(
    wclient: TestClient, alert_id: int, inspector_key: str, target: str, fields: dict[str, Any], names: list[str]
) -> None:
    _, etag = read_alert(wclient, inspector_key, alert_id)

    response = move(wclient, inspector_key, alert_id, target, **resolve(fields))

    assert is_problem(response, 422), response.text
    locs = error_locs(response)
    assert sorted(loc[:2] for loc in locs) == sorted(["body", name] for name in names), locs
    detail, after = read_alert(wclient, inspector_key, alert_id)
    assert (detail["stage"], detail["history"], after) == ("warning", [], etag)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"to": "closed"}, ["body", "reason"]),
        ({"to": "closed", "reason": ""}, ["body", "reason"]),
        ({"to": "closed", "reason": "   "}, ["body", "reason"]),
        ({"to": "closed", "reason": None}, ["body", "reason"]),
        ({"to": "closed", "reason": "x" * 2001}, ["body", "reason"]),
        ({"reason": "办结"}, ["body", "to"]),
        ({"to": "review", "reason": "办结"}, ["body", "to"]),
        ({"to": None, "reason": "办结"}, ["body", "to"]),
    ],
)
def test_to_and_reason_are_required(
    wclient: TestClient, alert_id: int, inspector_key: str, body: dict[str, Any], loc: list[str]
) -> None:
    response = wclient.post(f"/v1/alerts/{alert_id}/transitions", json=body, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)
    assert read_alert(wclient, inspector_key, alert_id)[0]["stage"] == "warning"


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'"closed"'])
def test_a_body_that_is_not_an_object_is_422(
    wclient: TestClient, alert_id: int, inspector_key: str, content: bytes
) -> None:
    headers = bearer(inspector_key) | {"Content-Type": "application/json"}
    response = wclient.post(f"/v1/alerts/{alert_id}/transitions", content=content, headers=headers)
    assert is_problem(response, 422)


def test_an_interview_with_every_level_is_accepted(wclient: TestClient, source_key: str, inspector_key: str) -> None:
    for n, level in enumerate(["unit", "discipline", "committee"]):
        alert = raise_operator_alert(wclient, source_key, police(f"LV{n}", "U1"))
        body = ok(move(wclient, inspector_key, alert, "interview", **{**INTERVIEW_FIELDS, "level": level}))
        assert body["history"][-1]["details"]["level"] == level


@pytest.mark.parametrize("outcome", PEOPLE_OUTCOMES)
def test_every_people_outcome_is_accepted_on_a_person(
    wclient: TestClient, alert_id: int, inspector_key: str, outcome: str
) -> None:
    body = ok(move(wclient, inspector_key, alert_id, "accountability", outcome=outcome))
    assert body["history"][-1]["details"] == {"outcome": outcome}


def test_a_supervision_may_be_assigned_to_a_unit_an_event_registered(
    wclient: TestClient, alert_id: int, inspector_key: str
) -> None:
    # U1 was registered on the fly by the alert's events, not by an admin: it is an org unit all the same.
    body = ok(move(wclient, inspector_key, alert_id, "supervision", assignee_unit="U1", due_at=in_seconds(3600)))
    assert body["assignee_unit"] == "U1"


def test_a_due_time_is_returned_in_utc(wclient: TestClient, alert_id: int, inspector_key: str) -> None:
    body = ok(
        move(
            wclient, inspector_key, alert_id, "supervision", assignee_unit=ASSIGNEE, due_at="2099-01-01T08:00:00+08:00"
        )
    )
    assert aware(body["due_at"]) == datetime(2099, 1, 1, tzinfo=UTC)
    assert aware(body["due_at"]).utcoffset() == timedelta(0)


# --- business units: suspension ------------------------------------------------------------------


@pytest.mark.parametrize("outcome", PEOPLE_OUTCOMES)
def test_a_business_unit_is_not_held_accountable_like_a_person(
    wclient: TestClient, station_alert_id: int, inspector_key: str, outcome: str
) -> None:
    response = move(wclient, inspector_key, station_alert_id, "accountability", outcome=outcome)
    assert is_problem(response, 422)
    assert error_locs(response) == [["body", "outcome"]]
    assert read_alert(wclient, inspector_key, station_alert_id)[0]["stage"] == "warning"


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"outcome": "suspension"}, ["body", "suspension_days"]),
        ({"outcome": "suspension", "suspension_days": 0}, ["body", "suspension_days"]),
        ({"outcome": "suspension", "suspension_days": -1}, ["body", "suspension_days"]),
        ({"outcome": "suspension", "suspension_days": "three"}, ["body", "suspension_days"]),
        ({"outcome": "suspension", "suspension_days": 1.5}, ["body", "suspension_days"]),
        ({"suspension_days": 3}, ["body", "outcome"]),
    ],
)
def test_a_suspension_needs_whole_days(
    wclient: TestClient, station_alert_id: int, inspector_key: str, fields: dict[str, Any], loc: list[str]
) -> None:
    response = move(wclient, inspector_key, station_alert_id, "accountability", **fields)
    assert is_problem(response, 422)
    assert loc in error_locs(response)
    assert read_alert(wclient, inspector_key, station_alert_id)[0]["stage"] == "warning"
    breakers = wclient.get("/v1/breakers", headers=bearer(inspector_key)).json()["items"]
    assert breakers == []


def check_station(client: TestClient, key: str, domain: str = "vehicle_inspection") -> dict[str, Any]:
    params = {"subject_type": "business_unit", "subject_id": "IS-07", "domain": domain}
    response = client.get("/v1/breakers/check", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_suspension_stops_the_business_unit_until_an_admin_lifts_it(
    wclient: TestClient, station_alert_id: int, source_key: str, inspector_key: str, admin_key: str
) -> None:
    assert check_station(wclient, source_key)["allowed"] is True

    before = datetime.now(UTC)
    response = move(
        wclient, inspector_key, station_alert_id, "accountability", "停业整改", outcome="suspension", suspension_days=3
    )
    body = ok(response)
    after = datetime.now(UTC)
    assert body["stage"] == "accountability"
    assert body["history"][-1]["details"] == {"outcome": "suspension", "suspension_days": 3}

    # a breaker of kind suspension, open for three days, on the station in the alert's domains
    (breaker,) = wclient.get("/v1/breakers", headers=bearer(inspector_key)).json()["items"]
    assert breaker["kind"] == "suspension"
    assert breaker["state"] == "open"
    assert (breaker["subject_type"], breaker["subject_id"]) == ("business_unit", "IS-07")
    assert breaker["domains"] == ["vehicle_inspection"]
    assert breaker["alert_id"] == station_alert_id
    assert before + timedelta(days=3) <= aware(breaker["suspended_until"]) <= after + timedelta(days=3)
    open_ids = [b["id"] for b in wclient.get("/v1/breakers?state=open", headers=bearer(inspector_key)).json()["items"]]
    assert open_ids == [breaker["id"]]

    # the station is stopped in vehicle inspection, and only there
    check = check_station(wclient, source_key)
    assert check["allowed"] is False
    assert [b["id"] for b in check["breakers"]] == [breaker["id"]]
    assert check_station(wclient, source_key, "vehicle_registration")["allowed"] is True
    result = post_event(wclient, source_key, inspection(30))
    assert result["blocked"] is True
    assert [b["id"] for b in result["breakers"]] == [breaker["id"]]
    other_station = post_event(wclient, source_key, inspection(31, station="IS-08"))
    assert other_station["blocked"] is False

    # an inspector may not lift a suspension, an admin may
    refused = wclient.post(
        f"/v1/breakers/{breaker['id']}/reset", json={"reason": "整改完毕"}, headers=bearer(inspector_key)
    )
    assert is_problem(refused, 403)
    assert check_station(wclient, source_key)["allowed"] is False

    lifted = wclient.post(f"/v1/breakers/{breaker['id']}/reset", json={"reason": "整改完毕"}, headers=bearer(admin_key))
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["state"] == "closed"
    history = lifted.json()["history"]
    assert [(h["action"], h["from"], h["to"], h["actor"]) for h in history] == [
        ("suspend", "closed", "open", "inspector-wang"),
        ("lift", "open", "closed", "admin"),
    ]
    assert "停业整改" in history[0]["reason"]
    assert history[1]["reason"] == "整改完毕"
    assert check_station(wclient, source_key)["allowed"] is True
    assert post_event(wclient, source_key, inspection(40))["blocked"] is False
    detail = wclient.get(f"/v1/breakers/{breaker['id']}", headers=bearer(inspector_key)).json()
    assert (detail["state"], detail["history"]) == ("closed", history)


def test_a_lifted_suspension_cannot_be_lifted_again(
    wclient: TestClient, station_alert_id: int, inspector_key: str, admin_key: str
) -> None:
    ok(move(wclient, inspector_key, station_alert_id, "accountability", outcome="suspension", suspension_days=1))
    (breaker,) = wclient.get("/v1/breakers", headers=bearer(inspector_key)).json()["items"]
    path = f"/v1/breakers/{breaker['id']}/reset"
    assert wclient.post(path, json={"reason": "整改完毕"}, headers=bearer(admin_key)).status_code == 200
    assert is_problem(wclient.post(path, json={"reason": "再次解除"}, headers=bearer(admin_key)), 409)


def test_a_new_suspension_after_a_lift_stops_the_unit_again(
    wclient: TestClient, station_alert_id: int, source_key: str, inspector_key: str, admin_key: str
) -> None:
    ok(move(wclient, inspector_key, station_alert_id, "accountability", outcome="suspension", suspension_days=1))
    (first,) = wclient.get("/v1/breakers", headers=bearer(inspector_key)).json()["items"]
    lift = wclient.post(f"/v1/breakers/{first['id']}/reset", json={"reason": "整改完毕"}, headers=bearer(admin_key))
    assert lift.status_code == 200, lift.text
    assert check_station(wclient, source_key)["allowed"] is True

    later = raise_station_alert(wclient, source_key, "IS-07", hour=11)
    before = datetime.now(UTC)
    ok(move(wclient, inspector_key, later, "accountability", "再次停业整改", outcome="suspension", suspension_days=5))

    check = check_station(wclient, source_key)
    assert check["allowed"] is False
    (breaker,) = check["breakers"]
    assert (breaker["kind"], breaker["state"], breaker["alert_id"]) == ("suspension", "open", later)
    assert aware(breaker["suspended_until"]) >= before + timedelta(days=5)
    detail = wclient.get(f"/v1/breakers/{breaker['id']}", headers=bearer(inspector_key)).json()
    assert [h["action"] for h in detail["history"]][-1] == "suspend"


# --- If-Match ------------------------------------------------------------------------------------


def test_a_stale_if_match_is_412_and_changes_nothing(wclient: TestClient, alert_id: int, inspector_key: str) -> None:
    _, etag = read_alert(wclient, inspector_key, alert_id)
    ok(move(wclient, inspector_key, alert_id, "supervision", if_match=etag, **supervision_fields()))
    current, current_etag = read_alert(wclient, inspector_key, alert_id)

    response = move(wclient, inspector_key, alert_id, "interview", if_match=etag, **INTERVIEW_FIELDS)

    assert is_problem(response, 412)
    after, after_etag = read_alert(wclient, inspector_key, alert_id)
    assert (after["stage"], after["history"], after_etag) == ("supervision", current["history"], current_etag)


@pytest.mark.parametrize("if_match", ['"999"', '"0"', "W/garbage", '""'])
def test_an_if_match_of_no_version_is_412(
    wclient: TestClient, alert_id: int, inspector_key: str, if_match: str
) -> None:
    response = move(wclient, inspector_key, alert_id, "closed", if_match=if_match)
    assert is_problem(response, 412)
    assert read_alert(wclient, inspector_key, alert_id)[0]["stage"] == "warning"


def test_the_current_if_match_is_accepted_and_the_answer_carries_the_next(
    wclient: TestClient, alert_id: int, inspector_key: str
) -> None:
    _, etag = read_alert(wclient, inspector_key, alert_id)
    first = move(wclient, inspector_key, alert_id, "supervision", if_match=etag, **supervision_fields())
    ok(first)
    assert first.headers["etag"] != etag
    second = move(wclient, inspector_key, alert_id, "interview", if_match=first.headers["etag"], **INTERVIEW_FIELDS)
    assert ok(second)["stage"] == "interview"


def test_if_match_star_is_accepted(wclient: TestClient, alert_id: int, inspector_key: str) -> None:
    assert ok(move(wclient, inspector_key, alert_id, "dismissed", if_match="*"))["stage"] == "dismissed"


def test_if_match_may_list_the_current_etag_among_others(
    wclient: TestClient, alert_id: int, inspector_key: str
) -> None:
    _, etag = read_alert(wclient, inspector_key, alert_id)
    assert ok(move(wclient, inspector_key, alert_id, "dismissed", if_match=f'"999", {etag}'))["stage"] == "dismissed"


def test_a_new_hit_changes_the_etag_so_a_move_on_the_old_one_is_412(
    wclient: TestClient, alert_id: int, source_key: str, inspector_key: str
) -> None:
    _, etag = read_alert(wclient, inspector_key, alert_id)
    post_event(wclient, source_key, registration(30, police("OP1", "U1")))
    assert is_problem(move(wclient, inspector_key, alert_id, "closed", if_match=etag), 412)


# --- overdue -------------------------------------------------------------------------------------


def listed_ids(client: TestClient, key: str, **params: Any) -> list[int]:
    response = client.get("/v1/alerts", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_a_supervision_past_its_due_time_is_overdue(
    wclient: TestClient, alert_id: int, source_key: str, inspector_key: str
) -> None:
    other = raise_operator_alert(wclient, source_key, police("OP2", "U1"))
    ok(move(wclient, inspector_key, other, "supervision", **supervision_fields()))
    due_at = datetime.now(UTC) + timedelta(seconds=2)
    body = ok(move(wclient, inspector_key, alert_id, "supervision", assignee_unit=ASSIGNEE, due_at=due_at.isoformat()))
    assert body["overdue"] is False
    assert listed_ids(wclient, inspector_key, overdue="true") == []

    time.sleep(max(0.0, (due_at - datetime.now(UTC)).total_seconds()) + 0.2)

    detail, _ = read_alert(wclient, inspector_key, alert_id)
    assert detail["overdue"] is True
    assert listed_ids(wclient, inspector_key, overdue="true") == [alert_id]
    assert sorted(listed_ids(wclient, inspector_key, overdue="false")) == [other]
    (listed,) = [
        a for a in wclient.get("/v1/alerts", headers=bearer(inspector_key)).json()["items"] if a["id"] == alert_id
    ]
    assert listed["overdue"] is True

    # moving on ends it
    body = ok(move(wclient, inspector_key, alert_id, "interview", **INTERVIEW_FIELDS))
    assert body["overdue"] is False
    assert listed_ids(wclient, inspector_key, overdue="true") == []


def test_a_supervision_recorded_past_its_due_time_is_overdue_at_once(
    wclient: TestClient, alert_id: int, inspector_key: str
) -> None:
    body = ok(move(wclient, inspector_key, alert_id, "supervision", **supervision_fields(-3600)))
    assert body["overdue"] is True
    assert listed_ids(wclient, inspector_key, overdue="true") == [alert_id]


# --- who may move --------------------------------------------------------------------------------


def test_a_move_needs_a_key(wclient: TestClient, alert_id: int) -> None:
    path = f"/v1/alerts/{alert_id}/transitions"
    assert is_problem(wclient.post(path, json={"to": "closed", "reason": "x"}), 401)
    assert is_problem(wclient.post(path, json={"to": "closed", "reason": "x"}, headers=bearer("sv_nope")), 401)


def test_a_source_key_may_not_move(wclient: TestClient, alert_id: int, source_key: str, inspector_key: str) -> None:
    assert is_problem(move(wclient, source_key, alert_id, "closed"), 403)
    assert read_alert(wclient, inspector_key, alert_id)[0]["stage"] == "warning"


def test_an_unknown_alert_is_404(wclient: TestClient, alert_id: int, inspector_key: str) -> None:
    assert is_problem(move(wclient, inspector_key, alert_id + 1000, "closed"), 404)


def test_an_alert_outside_a_scoped_key_is_404(
    wclient: TestClient, alert_id: int, admin_key: str, inspector_key: str, make_key: KeyMaker
) -> None:
    put_unit(wclient, admin_key, "DD2")
    scoped = make_key("inspector", "dd2-inspector", unit="DD2")
    assert is_problem(move(wclient, scoped, alert_id, "closed"), 404)
    assert is_problem(move(wclient, scoped, alert_id, "closed", if_match="*"), 404)
    assert read_alert(wclient, inspector_key, alert_id)[0]["stage"] == "warning"


# --- concurrency -------------------------------------------------------------------------------


def race(client: TestClient, key: str, alert_id: int, **kwargs: Any) -> list[int]:
    """The same move posted by two threads at once; their status codes, sorted."""
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    lock = threading.Lock()

    def go() -> None:
        barrier.wait(timeout=10)
        response = move(client, key, alert_id, "supervision", **supervision_fields(), **kwargs)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(statuses)


@pytest.mark.parametrize("with_if_match", [True, False])
def test_two_simultaneous_moves_make_one_transition(
    wclient: TestClient, alert_id: int, inspector_key: str, with_if_match: bool
) -> None:
    _, etag = read_alert(wclient, inspector_key, alert_id)

    statuses = race(wclient, inspector_key, alert_id, **({"if_match": etag} if with_if_match else {}))

    assert statuses == ([200, 412] if with_if_match else [200, 409])
    detail, _ = read_alert(wclient, inspector_key, alert_id)
    assert detail["stage"] == "supervision"
    assert len(detail["history"]) == 1
