"""The console's routes over HTTP: no session → sign-in, wrong role → 403 page, bad form → 422 page naming
the field, and the happy path of each page and form; the same jurisdiction and messages as the API."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.alerts.models import Alert
from app.auth.service import active_key, list_keys, revoke_key
from app.console import session as sessions
from app.db import Database
from tests.conftest import KeyMaker
from tests.console.support import csrf_of, post_form, sign_in
from tests.factories import bearer

PAGES = [
    "/console/alerts",
    "/console/alerts/1",
    "/console/breakers",
    "/console/reports",
    "/console/audit",
    "/console/reports.csv",
    "/console/exemptions",
]
FORMS = [
    "/console/alerts/1/transitions",
    "/console/breakers/1/reset",
    "/console/signout",
    "/console/exemptions/1/decision",
    "/console/exemptions/1/revoke",
]


def signed_in(client: TestClient, key: str) -> TestClient:
    response = sign_in(client, key)
    assert response.status_code == 303, response.text
    return client


def fields_named(html: str) -> list[str]:
    return re.findall(r'<td class="field-name">([^<]*)</td>', html)


# --- sign-in, sessions, the frame of every page ---------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_a_page_without_a_session_sends_the_browser_to_sign_in(cclient: TestClient, path: str) -> None:
    response = cclient.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/signin?next=")


@pytest.mark.parametrize("path", FORMS)
def test_a_form_without_a_session_does_nothing_and_sends_to_sign_in(
    cclient: TestClient, world: dict[str, int], inspector_key: str, path: str
) -> None:
    response = cclient.post(path, data={"to": "dismissed", "reason": "x"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/signin")
    alert = cclient.get("/v1/alerts/1", headers=bearer(inspector_key)).json()
    assert alert["stage"] == "warning"


def test_sign_in_sets_a_strict_httponly_cookie_and_shows_who_is_signed_in(
    cclient: TestClient, make_key: KeyMaker, world: dict[str, int]
) -> None:
    key = make_key("inspector", "纪检-王", unit="DD1")
    response = sign_in(cclient, key)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/alerts"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(sessions.SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert key not in cookie
    page = cclient.get("/console/alerts")
    assert page.status_code == 200
    assert "纪检-王" in page.text
    assert "纪检监察" in page.text  # the role, in Chinese by default
    assert 'class="who-unit">DD1<' in page.text


def test_sign_in_refuses_an_unknown_key_a_source_key_and_a_missing_csrf_token(
    cclient: TestClient, source_key: str, inspector_key: str
) -> None:
    unknown = sign_in(cclient, "sv_not-a-key")
    assert unknown.status_code == 401
    assert "密钥无效或已吊销" in unknown.text
    source = sign_in(cclient, source_key)
    assert source.status_code == 403
    assert "该密钥不能登录控制台" in source.text
    no_token = cclient.post("/console/signin", data={"key": inspector_key}, follow_redirects=False)
    assert no_token.status_code == 403
    assert sessions.SESSION_COOKIE not in cclient.cookies


def test_a_revoked_key_ends_its_session_at_the_next_request(
    cclient: TestClient, db: Database, make_key: KeyMaker
) -> None:
    key = make_key("inspector", "to-revoke")
    signed_in(cclient, key)
    assert cclient.get("/console/alerts", follow_redirects=False).status_code == 200
    with db.session(write=True) as session:
        with db.engine.connect() as conn:
            found = active_key(conn, next(k for k in _key_ids(db) if k[1] == "to-revoke")[0])
        assert found is not None
        revoke_key(session, key_id=found[0].key_id)
    response = cclient.get("/console/alerts", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/signin")


def _key_ids(db: Database) -> list[tuple[int, str]]:
    with db.session() as session:
        return [(k.id, k.name) for k in list_keys(session)]


def test_a_tampered_session_cookie_is_no_session(cclient: TestClient, inspector_key: str) -> None:
    signed_in(cclient, inspector_key)
    token = cclient.cookies[sessions.SESSION_COOKIE]
    key_id, issued, nonce, signature = token.split(".")
    cclient.cookies.clear()
    cclient.cookies.set(sessions.SESSION_COOKIE, f"{int(key_id) + 1}.{issued}.{nonce}.{signature}")
    assert cclient.get("/console/alerts", follow_redirects=False).status_code == 303


def test_sign_out_needs_the_csrf_token_and_clears_the_session(cclient: TestClient, inspector_key: str) -> None:
    signed_in(cclient, inspector_key)
    page = cclient.get("/console/alerts").text
    refused = cclient.post("/console/signout", data={"csrf": "forged"}, follow_redirects=False)
    assert refused.status_code == 403
    assert "表单已失效" in refused.text
    response = post_form(cclient, "/console/signout", page, {})
    assert response.status_code == 303
    assert cclient.get("/console/alerts", follow_redirects=False).status_code == 303


def test_signing_out_ends_the_session_for_a_copy_of_its_cookie_too(cclient: TestClient, inspector_key: str) -> None:
    signed_in(cclient, inspector_key)
    copied = cclient.cookies.get(sessions.SESSION_COOKIE)
    assert copied is not None
    page = cclient.get("/console/alerts").text
    assert post_form(cclient, "/console/signout", page, {}).status_code == 303
    cclient.cookies.set(sessions.SESSION_COOKIE, copied)  # as a stolen or kept copy would be sent
    assert cclient.get("/console/alerts", follow_redirects=False).status_code == 303
    signed_in(cclient, inspector_key)  # a new sign-in is a new session
    assert cclient.get("/console/alerts", follow_redirects=False).status_code == 200


def test_a_session_of_a_source_key_gets_the_403_page_everywhere(
    cclient: TestClient, db: Database, source_key: str, world: dict[str, int]
) -> None:
    # A source key cannot sign in; a session cookie for one (made here with the key's own hash) is still refused.
    (key_id,) = [k for k, name in _key_ids(db) if name == "vr-system"]
    with db.engine.connect() as conn:
        found = active_key(conn, key_id)
    assert found is not None
    cclient.cookies.set(sessions.SESSION_COOKIE, sessions.issue(found[0], found[1]))
    for path in PAGES:
        response = cclient.get(path, follow_redirects=False)
        assert response.status_code == 403, path
        assert "无权访问" in response.text
        assert "the key 'vr-system' is source" in html.unescape(response.text)
    response = cclient.post(f"/console/alerts/{world['alert_in']}/transitions", data={}, follow_redirects=False)
    assert response.status_code == 403


def test_pages_carry_a_policy_without_inline_script_and_english_is_remembered(
    cclient: TestClient, inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    page = cclient.get("/console/alerts")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "<script" not in page.text
    assert not re.search(r"\son[a-z]+=", page.text)  # no inline event handler
    assert "Sign out" not in page.text
    english = cclient.get("/console/alerts?lang=en")
    assert "Sign out" in english.text
    assert "Sign out" in cclient.get("/console/breakers").text  # remembered
    assert "退出" in cclient.get("/console/breakers?lang=zh").text


# --- alerts ---------------------------------------------------------------------------------------------


def test_the_queue_filters_counts_and_keeps_to_the_keys_units(
    cclient: TestClient, world: dict[str, int], inspector_key: str, make_key: KeyMaker
) -> None:
    signed_in(cclient, inspector_key)
    everything = cclient.get("/console/alerts").text
    for alert_id in (world["alert_in"], world["alert_out"], world["station_alert"]):
        assert f'data-alert="{alert_id}"' in everything
    assert re.search(r'data-stage="warning">预警 <b>3</b>', everything)
    only_dd2 = cclient.get("/console/alerts", params={"unit": "DD2", "stage": "", "overdue": ""}).text
    assert f'data-alert="{world["alert_out"]}"' in only_dd2
    assert f'data-alert="{world["alert_in"]}"' not in only_dd2
    assert re.search(r'data-stage="warning">预警 <b>1</b>', only_dd2)
    cclient.cookies.clear()
    signed_in(cclient, make_key("inspector", "dd1", unit="DD1"))
    scoped = cclient.get("/console/alerts").text
    assert f'data-alert="{world["alert_in"]}"' in scoped
    assert f'data-alert="{world["alert_out"]}"' not in scoped


def test_a_bad_filter_is_a_422_page_naming_the_field(cclient: TestClient, inspector_key: str) -> None:
    signed_in(cclient, inspector_key)
    response = cclient.get("/console/alerts", params={"stage": "nonsense", "from": "2026-11-02T00:00"})
    assert response.status_code == 422
    assert fields_named(response.text) == ["stage"]
    backwards = cclient.get("/console/alerts", params={"from": "2026-11-02T00:00", "to": "2026-11-01T00:00"})
    assert backwards.status_code == 422
    assert fields_named(backwards.text) == ["to"]


def test_the_alert_page_shows_value_thresholds_evidence_and_a_form_per_next_stage(
    cclient: TestClient, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    page = cclient.get(f"/console/alerts/{world['alert_in']}").text
    assert "预警阈值 3" in page
    assert "熔断阈值 4" in page
    assert page.count("<tr><td>") >= 4  # the four triggering events
    assert "OP-IN" in page
    for target in ("supervision", "interview", "accountability", "closed", "dismissed"):
        assert f'id="move-{target}"' in page
    for field in ("assignee_unit", "due_at", "interviewees", "level", "held_at", "summary", "outcome"):
        assert f'name="{field}"' in page


def test_a_scoped_inspector_gets_the_apis_404_for_an_alert_outside_its_units(
    cclient: TestClient, world: dict[str, int], make_key: KeyMaker
) -> None:
    key = make_key("inspector", "dd1", unit="DD1")
    signed_in(cclient, key)
    response = cclient.get(f"/console/alerts/{world['alert_out']}")
    assert response.status_code == 404
    api = cclient.get(f"/v1/alerts/{world['alert_out']}", headers=bearer(key))
    assert api.json()["detail"] in response.text
    refused = cclient.post(
        f"/console/alerts/{world['alert_out']}/transitions",
        data={"csrf": csrf_of(cclient.get("/console/alerts").text), "to": "dismissed", "reason": "x"},
    )
    assert refused.status_code == 404


def _move(client: TestClient, alert_id: int, fields: dict[str, Any]) -> Any:
    page = client.get(f"/console/alerts/{alert_id}").text
    version = re.search(r'name="version" value="(\d+)"', page)
    assert version
    return post_form(client, f"/console/alerts/{alert_id}/transitions", page, {"version": version.group(1), **fields})


def test_the_forms_walk_an_alert_to_accountability_reading_times_in_the_configured_zone(
    cclient: TestClient, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    alert_id = world["alert_in"]
    steps: list[dict[str, Any]] = [
        {"to": "supervision", "reason": "提级督办", "assignee_unit": "DD1", "due_at": "2099-12-01T18:00"},
        {
            "to": "interview",
            "reason": "约谈",
            "interviewees": "OP-IN，P9",
            "level": "discipline",
            "held_at": "2026-11-25T15:00",
            "summary": "说明情况",
        },
        {"to": "accountability", "reason": "问责", "outcome": "demerit"},
    ]
    for step in steps:
        response = _move(cclient, alert_id, step)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/console/alerts/{alert_id}?moved=1"
    body = cclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key)).json()
    assert body["stage"] == "accountability"
    assert body["due_at"].startswith("2099-12-01T10:00:00")  # 18:00 in Asia/Shanghai
    assert body["history"][1]["details"]["interviewees"] == ["OP-IN", "P9"]
    assert body["history"][1]["details"]["held_at"].startswith("2026-11-25T07:00:00")
    page = cclient.get(f"/console/alerts/{alert_id}?moved=1").text
    assert 'data-stage="accountability"' in page
    assert "已处置" in page


def test_a_move_missing_a_field_is_a_422_page_naming_it_and_nothing_moves(
    cclient: TestClient, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    response = _move(cclient, world["alert_in"], {"to": "supervision", "reason": "督办", "assignee_unit": "DD1"})
    assert response.status_code == 422
    assert fields_named(response.text) == ["due_at"]
    bad_days = _move(
        cclient,
        world["alert_in"],
        {"to": "accountability", "reason": "r", "outcome": "demerit", "suspension_days": "many"},
    )
    assert bad_days.status_code == 422
    assert "suspension_days" in fields_named(bad_days.text)
    assert cclient.get(f"/v1/alerts/{world['alert_in']}", headers=bearer(inspector_key)).json()["stage"] == "warning"


def test_a_stale_form_shows_changed_meanwhile_with_the_new_state_instead_of_overwriting(
    cclient: TestClient, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    alert_id = world["alert_in"]
    old_page = cclient.get(f"/console/alerts/{alert_id}").text
    # Someone else moves it meanwhile, through the API.
    moved = cclient.post(
        f"/v1/alerts/{alert_id}/transitions", json={"to": "dismissed", "reason": "误报"}, headers=bearer(inspector_key)
    )
    assert moved.status_code == 200
    response = post_form(
        cclient,
        f"/console/alerts/{alert_id}/transitions",
        old_page,
        {"version": "1", "to": "supervision", "reason": "r", "assignee_unit": "DD1", "due_at": "2099-01-01T00:00"},
    )
    assert response.status_code == 412
    assert "已被他人修改" in response.text
    assert 'data-stage="dismissed"' in response.text
    assert cclient.get(f"/v1/alerts/{alert_id}", headers=bearer(inspector_key)).json()["stage"] == "dismissed"


def _version(client: TestClient, alert_id: int, key: str) -> str:
    return str(client.get(f"/v1/alerts/{alert_id}", headers=bearer(key)).headers["etag"].strip('"'))


def test_a_move_the_workflow_refuses_shows_the_apis_message(
    cclient: TestClient, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    page = cclient.get(f"/console/alerts/{world['alert_in']}").text
    assert _move(cclient, world["alert_in"], {"to": "closed", "reason": "办结"}).status_code == 303
    # The page of a closed alert offers no form; a hand-made one for the current version meets the API's 409.
    response = post_form(
        cclient,
        f"/console/alerts/{world['alert_in']}/transitions",
        page,
        {"version": _version(cclient, world["alert_in"], inspector_key), "to": "interview", "reason": "r"},
    )
    assert response.status_code == 409
    assert "an alert in closed cannot move to interview" in response.text


# --- breakers -------------------------------------------------------------------------------------------


def test_breakers_page_resets_an_open_breaker_with_a_reason(
    cclient: TestClient, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    page = cclient.get("/console/breakers").text
    assert f'data-breaker="{world["breaker_in"]}"' in page
    empty = post_form(cclient, f"/console/breakers/{world['breaker_in']}/reset", page, {"reason": ""})
    assert empty.status_code == 422
    assert fields_named(empty.text) == ["reason"]
    done = post_form(cclient, f"/console/breakers/{world['breaker_in']}/reset", page, {"reason": "核查无误"})
    assert done.status_code == 303
    after = cclient.get(done.headers["location"]).text
    assert "已解除熔断" in after
    row = re.search(rf'data-breaker="{world["breaker_in"]}" class="state-(\w+)"', after)
    assert row
    assert row.group(1) == "half_open"


def test_an_inspector_lifting_a_suspension_gets_the_403_page_an_admin_lifts_it(
    cclient: TestClient, world: dict[str, int], inspector_key: str, admin_key: str
) -> None:
    signed_in(cclient, inspector_key)
    moved = _move(
        cclient,
        world["station_alert"],
        {"to": "accountability", "reason": "停业整改", "outcome": "suspension", "suspension_days": "30"},
    )
    assert moved.status_code == 303, moved.text
    page = cclient.get("/console/breakers").text
    (suspension,) = re.findall(
        r'data-breaker="(\d+)" class="state-open">\s*<td>#\d+</td>\s*<td class="state">[^<]*'
        r"</td>\s*<td>停业整改",
        page,
    )
    refused = post_form(cclient, f"/console/breakers/{suspension}/reset", page, {"reason": "整改完毕"})
    assert refused.status_code == 403
    assert "lifted early by an admin" in refused.text
    cclient.cookies.clear()
    signed_in(cclient, admin_key)
    page = cclient.get("/console/breakers").text
    assert post_form(cclient, f"/console/breakers/{suspension}/reset", page, {"reason": "整改完毕"}).status_code == 303


# --- reports and audit ----------------------------------------------------------------------------------


def test_the_report_page_has_the_seeds_table_three_charts_and_a_csv(
    cclient: TestClient, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    page = cclient.get("/console/reports", params={"period": "2026-11", "group_by": "unit"})
    assert page.status_code == 200
    assert page.text.count("<svg") == 3
    assert "DD2" in page.text
    assert "DD1-ZD1" in page.text
    total = re.search(r"<tfoot><tr><th>合计</th><th>(\d+)</th>", page.text)
    assert total
    assert total.group(1) == "3"
    # By month: November has the three alerts; the funnel starts at three warnings.
    assert "<title>2026-11: 3</title>" in page.text
    assert "<title>预警: 3</title>" in page.text
    csv = cclient.get("/console/reports.csv", params={"period": "2026-Q4", "group_by": "domain"})
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("group,alerts_raised,")
    assert "vehicle_registration,2," in csv.text


def test_a_bad_period_is_a_422_page_naming_it(cclient: TestClient, inspector_key: str) -> None:
    signed_in(cclient, inspector_key)
    response = cclient.get("/console/reports", params={"period": "2026-13"})
    assert response.status_code == 422
    assert fields_named(response.text) == ["period"]


def test_the_audit_page_shows_the_chain_verified_and_recent_entries(
    cclient: TestClient, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    page = cclient.get("/console/audit").text
    assert 'data-ok="true"' in page
    assert "审计链校验通过" in page
    assert "alert.raised" in page or "breaker" in page


# --- API docs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_their_assets_from_the_app(cclient: TestClient, path: str) -> None:
    page = cclient.get(path)
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets
    for asset in assets:
        assert asset.startswith("/"), asset
        assert cclient.get(asset).status_code == 200, asset
    assert "https://" not in page.text.replace("https://swagger.io", "")


def test_an_overdue_supervision_is_marked_in_the_queue_and_found_by_the_overdue_filter(
    cclient: TestClient, db: Database, world: dict[str, int], inspector_key: str
) -> None:
    signed_in(cclient, inspector_key)
    alert_id = world["alert_in"]
    moved = _move(
        cclient, alert_id, {"to": "supervision", "reason": "督办", "assignee_unit": "DD1", "due_at": "2099-12-01T18:00"}
    )
    assert moved.status_code == 303
    # Time passes: the due time is now behind us.
    with db.session(write=True) as session:
        session.execute(update(Alert).where(Alert.id == alert_id).values(due_at=datetime.now(UTC) - timedelta(hours=1)))
    queue = cclient.get("/console/alerts").text
    assert re.search(rf'<tr class="overdue" data-alert="{alert_id}">', queue)
    assert f'<tr class="" data-alert="{world["alert_out"]}">' in queue
    overdue = cclient.get("/console/alerts", params={"overdue": "true"}).text
    assert re.findall(r'data-alert="(\d+)"', overdue) == [str(alert_id)]
    assert "超期" in cclient.get(f"/console/alerts/{alert_id}").text


def test_an_id_beyond_what_a_path_takes_is_a_422_page_naming_it(cclient: TestClient, inspector_key: str) -> None:
    signed_in(cclient, inspector_key)
    response = cclient.get("/console/alerts/99999999999999999999")
    assert response.status_code == 422
    assert fields_named(response.text) == ["alert_id"]
    page = cclient.get("/console/breakers").text
    refused = post_form(cclient, "/console/breakers/0/reset", page, {"reason": "r"})
    assert refused.status_code == 422
    assert fields_named(refused.text) == ["breaker_id"]
