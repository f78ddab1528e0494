"""Exemptions (报备) through the API: filing, four-eyes decisions, revocation, expiry, scoping, and the effect
on alerts, breakers, reports and the audit chain."""

from __future__ import annotations

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
    build_units,
    error_locs,
    get_alert,
    is_problem,
    list_alerts,
    police,
    post_all,
    registration,
    write_rules,
)
from tests.conftest import KeyMaker
from tests.factories import bearer

# t-count warns at 3 registrations by one operator in an hour and trips at 4; events on 2026-11-21, +08:00.
NINE, TEN, ELEVEN = "2026-11-21T09:00:00+08:00", "2026-11-21T10:00:00+08:00", "2026-11-21T11:00:00+08:00"


@pytest.fixture
def rclient(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    with app_client(settings, write_rules(tmp_path / "rules", COUNT_RULE + MORE_RULES)) as test_client:
        yield test_client


def filing(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "rule_id": "t-count",
        "subject_type": "operator",
        "subject_id": "OP1",
        "from": NINE,
        "to": TEN,
        "reason": "车队集中上户 fleet registration of 200 new-energy vehicles",
        "reference": "FLEET-2026-001",
    }
    body.update(overrides)
    return body


def file(client: TestClient, key: str, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/exemptions", json=filing(**overrides), headers=bearer(key))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def decide(client: TestClient, key: str, exemption_id: int, approve: bool = True) -> Any:
    return client.post(
        f"/v1/exemptions/{exemption_id}/decision",
        json={"approve": approve, "reason": "核实无误 checked"},
        headers=bearer(key),
    )


def revoke(client: TestClient, key: str, exemption_id: int) -> Any:
    return client.post(f"/v1/exemptions/{exemption_id}/revoke", json={"reason": "撤销 withdrawn"}, headers=bearer(key))


def approved(client: TestClient, source_key: str, inspector_key: str, **overrides: Any) -> dict[str, Any]:
    filed = file(client, source_key, **overrides)
    response = decide(client, inspector_key, filed["id"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def four_registrations(client: TestClient, key: str, operator: str = "OP1", unit: str = "U1", hour: int = 9) -> Any:
    """Enough for t-count to warn (3) and trip (4); the results of the posts."""
    return post_all(client, key, [registration(minute, police(operator, unit), hour) for minute in range(4)])


def open_breakers(client: TestClient, key: str) -> list[dict[str, Any]]:
    response = client.get("/v1/breakers", params={"state": "open"}, headers=bearer(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def audit_actions(client: TestClient, key: str, object_type: str) -> list[str]:
    response = client.get("/v1/audit", params={"object_type": object_type, "limit": 500}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return [entry["action"] for entry in reversed(response.json()["items"])]


# --- authentication, roles, validation -----------------------------------------------------------------------


def test_every_endpoint_needs_a_key(rclient: TestClient) -> None:
    for method, path, body in [
        ("post", "/v1/exemptions", filing()),
        ("get", "/v1/exemptions", None),
        ("get", "/v1/exemptions/1", None),
        ("post", "/v1/exemptions/1/decision", {"approve": True, "reason": "x"}),
        ("post", "/v1/exemptions/1/revoke", {"reason": "x"}),
    ]:
        response = rclient.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
        assert is_problem(response, 401), (method, path)
        assert is_problem(rclient.request(method, path, json=body), 401), (method, path)


def test_a_source_key_cannot_decide_or_revoke(rclient: TestClient, source_key: str, make_key: KeyMaker) -> None:
    filed = file(rclient, source_key)
    other_source = make_key("source", "exam-system")
    assert is_problem(decide(rclient, other_source, filed["id"]), 403)
    assert is_problem(revoke(rclient, other_source, filed["id"]), 403)
    assert is_problem(decide(rclient, source_key, filed["id"]), 403)


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"to": "2026-11-21T10:00:00"}, ["body", "to"]),  # no offset
        ({"to": NINE}, ["body", "to"]),  # not after from
        ({"to": "2026-12-23T09:00:00+08:00"}, ["body", "to"]),  # more than 31 days
        ({"rule_id": None}, ["body", "domains"]),  # a filing for every rule of no domain
        ({"rule_id": "no-such-rule"}, ["body", "rule_id"]),
        ({"subject_type": "agent"}, ["body", "subject_type"]),  # t-count groups by operator
        ({"subject_type": "nobody"}, ["body", "subject_type"]),
        ({"reason": "  "}, ["body", "reason"]),
        ({"domains": ["bicycles"]}, ["body", "domains", 0]),
        ({"surplus": 1}, ["body", "surplus"]),
    ],
)
def test_a_bad_filing_is_a_422_naming_the_field(
    rclient: TestClient, source_key: str, overrides: dict[str, Any], loc: list[Any]
) -> None:
    response = rclient.post("/v1/exemptions", json=filing(**overrides), headers=bearer(source_key))
    assert is_problem(response, 422), response.text
    assert loc in error_locs(response)


def test_bad_decisions_and_queries_are_422s(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    filed = file(rclient, source_key)
    path = f"/v1/exemptions/{filed['id']}"
    assert is_problem(rclient.post(f"{path}/decision", json={"approve": True}, headers=bearer(inspector_key)), 422)
    response = rclient.post(f"{path}/decision", json={"approve": "maybe", "reason": "x"}, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    for loose in (0, 1, "true", "no"):  # only JSON's true and false decide (the schema says boolean)
        body = {"approve": loose, "reason": "x"}
        response = rclient.post(f"{path}/decision", json=body, headers=bearer(inspector_key))
        assert is_problem(response, 422), loose
        assert "approve" in response.text
    assert rclient.get(path, headers=bearer(inspector_key)).json()["status"] == "requested"
    assert is_problem(rclient.post(f"{path}/revoke", json={}, headers=bearer(inspector_key)), 422)
    for params in ({"limit": 501}, {"status": "pending"}, {"active": "perhaps"}):
        assert is_problem(rclient.get("/v1/exemptions", params=params, headers=bearer(inspector_key)), 422), params
    assert is_problem(rclient.get("/v1/exemptions/0", headers=bearer(inspector_key)), 422)
    assert is_problem(rclient.get("/v1/exemptions/999", headers=bearer(inspector_key)), 404)


# --- the life cycle ------------------------------------------------------------------------------------------


def test_a_filing_is_requested_and_its_filer_reads_only_its_own(
    rclient: TestClient, source_key: str, make_key: KeyMaker, inspector_key: str
) -> None:
    filed = file(rclient, source_key)
    assert filed["status"] == "requested"
    assert filed["requested_by"] == "vr-system"
    assert (filed["rule_id"], filed["domains"], filed["subject_id"]) == ("t-count", ["vehicle_registration"], "OP1")
    assert (filed["from"], filed["to"]) == ("2026-11-21T01:00:00Z", "2026-11-21T02:00:00Z")
    assert filed["late"] is True  # filed after `from`: late filing is visible
    assert filed["active"] is False
    assert datetime.fromisoformat(filed["filed_at"]) > datetime.now(UTC) - timedelta(minutes=5)

    other = make_key("source", "exam-system")
    assert rclient.get(f"/v1/exemptions/{filed['id']}", headers=bearer(source_key)).json() == filed
    assert is_problem(rclient.get(f"/v1/exemptions/{filed['id']}", headers=bearer(other)), 404)
    assert rclient.get("/v1/exemptions", headers=bearer(other)).json() == {"items": [], "next_cursor": None}
    listed = rclient.get("/v1/exemptions", headers=bearer(inspector_key)).json()["items"]
    assert [item["id"] for item in listed] == [filed["id"]]


def test_approval_is_four_eyes(rclient: TestClient, inspector_key: str, make_key: KeyMaker) -> None:
    filed = file(rclient, inspector_key)  # an inspector filing on a business's behalf
    response = decide(rclient, inspector_key, filed["id"])
    assert is_problem(response, 409)
    assert "four eyes" in response.json()["detail"]
    admin_named_alike = make_key("admin", "inspector-wang")  # the key's name is what counts
    assert is_problem(decide(rclient, admin_named_alike, filed["id"]), 409)
    response = decide(rclient, make_key("inspector", "inspector-li"), filed["id"])
    assert response.status_code == 200, response.text
    decided = response.json()
    assert (decided["status"], decided["decided_by"], decided["decision_reason"]) == (
        "approved",
        "inspector-li",
        "核实无误 checked",
    )


def test_only_a_requested_exemption_is_decided_and_only_a_live_one_revoked(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    rejected = file(rclient, source_key)
    assert decide(rclient, inspector_key, rejected["id"], approve=False).json()["status"] == "rejected"
    assert is_problem(decide(rclient, inspector_key, rejected["id"]), 409)
    assert is_problem(revoke(rclient, inspector_key, rejected["id"]), 409)

    withdrawn = file(rclient, source_key)
    response = revoke(rclient, inspector_key, withdrawn["id"])
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["revoked_by"]) == ("revoked", "inspector-wang")
    assert is_problem(decide(rclient, inspector_key, withdrawn["id"]), 409)
    assert is_problem(revoke(rclient, inspector_key, withdrawn["id"]), 409)

    statuses = {
        status: [
            item["id"]
            for item in rclient.get("/v1/exemptions", params={"status": status}, headers=bearer(inspector_key)).json()[
                "items"
            ]
        ]
        for status in ("requested", "rejected", "revoked")
    }
    assert statuses == {"requested": [], "rejected": [rejected["id"]], "revoked": [withdrawn["id"]]}


def test_active_means_approved_and_now_within_the_window(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    now = datetime.now(UTC)
    current = approved(
        rclient,
        source_key,
        inspector_key,
        **{"from": (now - timedelta(hours=1)).isoformat(), "to": (now + timedelta(days=1)).isoformat()},
    )
    past = approved(rclient, source_key, inspector_key)  # 2026-11-21 09:00-10:00: expired
    future = file(
        rclient,
        source_key,
        **{"from": (now + timedelta(days=1)).isoformat(), "to": (now + timedelta(days=2)).isoformat()},
    )
    assert future["late"] is False
    assert current["active"] is True
    assert past["active"] is False
    active = rclient.get("/v1/exemptions", params={"active": "true"}, headers=bearer(inspector_key)).json()["items"]
    assert [item["id"] for item in active] == [current["id"]]
    inactive = rclient.get("/v1/exemptions", params={"active": "false"}, headers=bearer(inspector_key)).json()["items"]
    assert {item["id"] for item in inactive} == {past["id"], future["id"]}
    by_subject = rclient.get("/v1/exemptions", params={"subject": "OP2"}, headers=bearer(inspector_key)).json()
    assert by_subject["items"] == []


def test_the_list_pages(rclient: TestClient, source_key: str, inspector_key: str) -> None:
    ids = [file(rclient, source_key)["id"] for _ in range(3)]
    first = rclient.get("/v1/exemptions", params={"limit": 2}, headers=bearer(inspector_key)).json()
    assert [item["id"] for item in first["items"]] == ids[:0:-1]
    second = rclient.get(
        "/v1/exemptions", params={"limit": 2, "cursor": first["next_cursor"]}, headers=bearer(inspector_key)
    ).json()
    assert ([item["id"] for item in second["items"]], second["next_cursor"]) == ([ids[0]], None)


# --- the effect on alerts, breakers and reports --------------------------------------------------------------


def test_an_approved_exemption_records_the_alert_but_trips_nothing_and_hides_it(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    exemption = approved(rclient, source_key, inspector_key)
    results = four_registrations(rclient, source_key)
    assert [r["blocked"] for r in results] == [False] * 4
    (alert_id,) = results[-1]["alerts"]
    alert = get_alert(rclient, inspector_key, alert_id)
    assert (alert["exempted"], alert["exemption_id"], alert["tripped"], alert["value"]) == (
        True,
        exemption["id"],
        True,
        4,
    )
    assert open_breakers(rclient, inspector_key) == []
    check = rclient.get(
        "/v1/breakers/check", params={"subject_type": "operator", "subject_id": "OP1"}, headers=bearer(source_key)
    ).json()
    assert check["allowed"] is True

    assert list_alerts(rclient, inspector_key) == []
    assert list_alerts(rclient, inspector_key, exempted="false") == []
    assert [a["id"] for a in list_alerts(rclient, inspector_key, exempted="true")] == [alert_id]
    assert [a["id"] for a in list_alerts(rclient, inspector_key, exempted="any")] == [alert_id]
    assert is_problem(rclient.get("/v1/alerts", params={"exempted": "yes"}, headers=bearer(inspector_key)), 422)

    summary = rclient.get("/v1/reports/summary", params={"group_by": "rule"}, headers=bearer(inspector_key)).json()
    (row,) = summary["items"]
    assert (row["group"], row["alerts_raised"], row["alerts_exempted"]) == ("t-count", 0, 1)
    csv_text = rclient.get(
        "/v1/reports/summary", params={"group_by": "rule"}, headers={**bearer(inspector_key), "Accept": "text/csv"}
    ).text
    header, line = csv_text.splitlines()
    assert dict(zip(header.split(","), line.split(","), strict=True))["alerts_exempted"] == "1"


def test_an_exemption_covers_only_its_window_its_subject_and_its_rule(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    approved(rclient, source_key, inspector_key)  # OP1, t-count, 09:00-10:00 local
    four_registrations(rclient, source_key, hour=10)  # the window after: expired by then
    four_registrations(rclient, source_key, operator="OP2")  # another operator
    alerts = list_alerts(rclient, inspector_key, exempted="any")
    assert [(a["subject_id"], a["exempted"]) for a in alerts] == [("OP1", False), ("OP2", False)]
    assert len(open_breakers(rclient, inspector_key)) == 2


def test_a_filing_for_every_rule_of_a_domain_covers_them(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    other_domain = approved(rclient, source_key, inspector_key, rule_id=None, domains=["driver_testing"])
    four_registrations(rclient, source_key)
    (alert,) = list_alerts(rclient, inspector_key, exempted="any")
    assert alert["exempted"] is False

    whole_domain = approved(
        rclient, source_key, inspector_key, rule_id=None, domains=["vehicle_registration"], to=ELEVEN
    )
    assert whole_domain["id"] != other_domain["id"]
    (alert,) = list_alerts(rclient, inspector_key, exempted="any")
    assert (alert["exempted"], alert["exemption_id"]) == (True, whole_domain["id"])


def test_a_late_approval_marks_the_alert_without_moving_it_or_resetting_its_breaker(
    rclient: TestClient, source_key: str, inspector_key: str, admin_key: str
) -> None:
    (alert_id,) = four_registrations(rclient, source_key)[-1]["alerts"]
    before = get_alert(rclient, inspector_key, alert_id)
    (breaker,) = open_breakers(rclient, inspector_key)
    moved = rclient.post(
        f"/v1/alerts/{alert_id}/transitions",
        json={"to": "supervision", "reason": "督办", "assignee_unit": "U1", "due_at": "2027-01-01T00:00:00+08:00"},
        headers=bearer(inspector_key),
    )
    assert moved.status_code == 200, moved.text

    exemption = approved(rclient, source_key, admin_key)
    after = get_alert(rclient, inspector_key, alert_id)
    assert (after["exempted"], after["exemption_id"], after["stage"]) == (True, exemption["id"], "supervision")
    assert (after["value"], after["tripped"], after["hits"]) == (before["value"], before["tripped"], before["hits"])
    etag = rclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key)).headers["ETag"]
    assert int(etag.strip('"')) == int(moved.headers["ETag"].strip('"')) + 1  # the version changes
    assert [b["id"] for b in open_breakers(rclient, inspector_key)] == [breaker["id"]]  # not reset


def test_revoking_counts_the_alerts_again_and_opens_the_breaker_at_once(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    exemption = approved(rclient, source_key, inspector_key)
    (alert_id,) = four_registrations(rclient, source_key)[-1]["alerts"]
    assert open_breakers(rclient, inspector_key) == []

    response = revoke(rclient, inspector_key, exemption["id"])
    assert response.status_code == 200, response.text
    alert = get_alert(rclient, inspector_key, alert_id)
    assert (alert["exempted"], alert["exemption_id"]) == (False, None)
    (breaker,) = open_breakers(rclient, inspector_key)
    assert (breaker["subject_id"], breaker["rule_id"], breaker["alert_id"]) == ("OP1", "t-count", alert_id)
    assert [a["id"] for a in list_alerts(rclient, inspector_key)] == [alert_id]
    blocked = rclient.post("/v1/events", json=registration(30, police("OP1", "U1")), headers=bearer(source_key))
    assert blocked.json()["blocked"] is True


def test_revoking_one_of_two_exemptions_leaves_the_alert_under_the_other(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    first = approved(rclient, source_key, inspector_key)
    second = approved(rclient, source_key, inspector_key, to=ELEVEN)
    (alert_id,) = four_registrations(rclient, source_key)[-1]["alerts"]
    assert get_alert(rclient, inspector_key, alert_id)["exemption_id"] == first["id"]
    revoke(rclient, inspector_key, first["id"])
    assert get_alert(rclient, inspector_key, alert_id)["exemption_id"] == second["id"]
    assert open_breakers(rclient, inspector_key) == []


def test_a_scan_keeps_the_exemption(rclient: TestClient, source_key: str, inspector_key: str, admin_key: str) -> None:
    approved(rclient, source_key, inspector_key)
    four_registrations(rclient, source_key)
    scan = rclient.post("/v1/scans", json={}, headers=bearer(admin_key))
    assert scan.status_code in (200, 201), scan.text
    (alert,) = list_alerts(rclient, inspector_key, exempted="true")
    assert alert["exempted"] is True
    assert open_breakers(rclient, inspector_key) == []


def test_a_backtest_names_the_exemption_that_would_cover_a_finding(
    rclient: TestClient, source_key: str, inspector_key: str
) -> None:
    exemption = approved(rclient, source_key, inspector_key)
    four_registrations(rclient, source_key)
    four_registrations(rclient, source_key, hour=10)
    response = rclient.post(
        "/v1/rules/t-count/backtest",
        json={"from": "2026-11-21T00:00:00+08:00", "to": "2026-11-22T00:00:00+08:00"},
        headers=bearer(inspector_key),
    )
    assert response.status_code == 200, response.text
    assert [item["exemption_id"] for item in response.json()["items"]] == [exemption["id"], None]


# --- audit and scope -----------------------------------------------------------------------------------------


def test_every_step_is_in_the_audit_chain(
    rclient: TestClient, source_key: str, inspector_key: str, admin_key: str
) -> None:
    exemption = approved(rclient, source_key, inspector_key)
    (alert_id,) = four_registrations(rclient, source_key)[-1]["alerts"]
    rejected = file(rclient, source_key)
    decide(rclient, inspector_key, rejected["id"], approve=False)
    revoke(rclient, admin_key, exemption["id"])

    response = rclient.get("/v1/audit", params={"object_type": "exemption", "limit": 500}, headers=bearer(admin_key))
    entries = [(e["action"], e["object_id"], e["actor"]) for e in reversed(response.json()["items"])]
    assert entries == [
        ("exemption.requested", str(exemption["id"]), "vr-system"),
        ("exemption.decided", str(exemption["id"]), "inspector-wang"),
        ("exemption.requested", str(rejected["id"]), "vr-system"),
        ("exemption.decided", str(rejected["id"]), "inspector-wang"),
        ("exemption.revoked", str(exemption["id"]), "admin"),
    ]
    decided = response.json()["items"][-2]["data"]
    assert (decided["approve"], decided["reason"], decided["subject_id"]) == (True, "核实无误 checked", "OP1")
    alert_entries = rclient.get(
        "/v1/audit", params={"object_type": "alert", "object_id": str(alert_id)}, headers=bearer(admin_key)
    ).json()["items"]
    assert "alert.unexempted" in [e["action"] for e in alert_entries]
    assert rclient.get("/v1/audit/verify", headers=bearer(admin_key)).json()["ok"] is True


def test_a_scoped_inspector_sees_and_decides_only_subjects_of_its_units(
    rclient: TestClient, source_key: str, admin_key: str, make_key: KeyMaker
) -> None:
    build_units(rclient, admin_key)  # ZD > DD1 > U1, ZD > U2
    four_registrations(rclient, source_key, operator="OP1", unit="U1")
    filed = file(rclient, source_key)
    path = f"/v1/exemptions/{filed['id']}"
    outside = make_key("inspector", "u2-inspector", unit="U2")
    above = make_key("inspector", "dd1-inspector", unit="DD1")

    assert is_problem(rclient.get(path, headers=bearer(outside)), 404)
    assert rclient.get("/v1/exemptions", headers=bearer(outside)).json()["items"] == []
    assert is_problem(decide(rclient, outside, filed["id"]), 404)
    assert is_problem(revoke(rclient, outside, filed["id"]), 404)

    assert rclient.get(path, headers=bearer(above)).status_code == 200
    assert [item["id"] for item in rclient.get("/v1/exemptions", headers=bearer(above)).json()["items"]] == [
        filed["id"]
    ]
    assert decide(rclient, above, filed["id"]).json()["status"] == "approved"
