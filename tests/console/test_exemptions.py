"""The console's exemptions page (报备): decide, revoke, four eyes, jurisdiction, and the exempted mark on alerts;
plus the values the pages show through the label catalogue rather than raw."""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import KeyMaker
from tests.console.support import post_form, sign_in
from tests.factories import bearer


def file(client: TestClient, key: str, operator: str = "OP-IN") -> int:
    """A filing for the world's operator, over the day of its alert and long enough to be in force now."""
    body: dict[str, Any] = {
        "rule_id": None,
        "domains": ["vehicle_registration"],
        "subject_type": "operator",
        "subject_id": operator,
        "from": "2026-11-21T00:00:00+08:00",
        "to": "2026-12-20T00:00:00+08:00",
        "reason": "车队集中上户 fleet registration",
        "reference": "FLEET-2026-007",
    }
    response = client.post("/v1/exemptions", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    exemption_id: int = response.json()["id"]
    return exemption_id


def error_detail(page: str) -> str:
    match = re.search(r'<p class="error" id="error-detail">([^<]*)</p>', page)
    assert match, "no error detail on the page"
    return html.unescape(match.group(1))


def console_as(client: TestClient, key: str) -> str:
    """Sign in and answer the exemptions page's HTML."""
    assert sign_in(client, key).status_code == 303
    page = client.get("/console/exemptions")
    assert page.status_code == 200, page.text
    return page.text


def test_an_inspector_approves_a_request_and_the_alert_is_marked_exempted(
    cclient: TestClient, world: dict[str, int], source_key: str, inspector_key: str
) -> None:
    exemption = file(cclient, source_key)
    page = console_as(cclient, inspector_key)
    assert 'href="/console/exemptions"' in page  # in the menu
    assert 'id="requested"' in page
    assert f'data-exemption="{exemption}"' in page
    assert "FLEET-2026-007" in page
    assert "经办人: OP-IN" in page  # the subject type in Chinese

    decided = post_form(
        cclient, f"/console/exemptions/{exemption}/decision", page, {"approve": "true", "reason": "核实无误"}
    )
    assert decided.status_code == 303
    assert decided.headers["location"] == f"/console/exemptions?decided={exemption}"
    after = cclient.get(decided.headers["location"]).text
    assert 'id="notice"' in after
    assert 'id="in-force"' in after
    assert "生效中" in after
    assert cclient.get(f"/v1/exemptions/{exemption}", headers=bearer(inspector_key)).json()["status"] == "approved"

    # The queue hides exempted alerts as the API does, offers the filter, and marks them with a link.
    queue = cclient.get("/console/alerts").text
    assert '<select name="exempted">' in queue
    assert f'data-alert="{world["alert_in"]}"' not in queue
    shown = cclient.get("/console/alerts", params={"exempted": "true"}).text
    assert f'data-alert="{world["alert_in"]}"' in shown
    assert f'data-alert="{world["alert_out"]}"' not in shown
    assert f'href="/console/exemptions#exemption-{exemption}"' in shown
    both = cclient.get("/console/alerts", params={"exempted": "any"}).text
    assert f'data-alert="{world["alert_in"]}"' in both
    assert f'data-alert="{world["alert_out"]}"' in both
    detail = cclient.get(f"/console/alerts/{world['alert_in']}").text
    assert 'id="exemption"' in detail
    assert f'href="/console/exemptions#exemption-{exemption}"' in detail
    assert cclient.get("/console/alerts", params={"exempted": "maybe"}).status_code == 422


def test_rejecting_and_revoking_land_in_the_history(
    cclient: TestClient, world: dict[str, int], source_key: str, inspector_key: str
) -> None:
    rejected, revoked = file(cclient, source_key), file(cclient, source_key, operator="OP-OUT")
    page = console_as(cclient, inspector_key)
    answer = post_form(
        cclient, f"/console/exemptions/{rejected}/decision", page, {"approve": "false", "reason": "无依据"}
    )
    assert answer.status_code == 303
    page = cclient.get("/console/exemptions").text
    answer = post_form(cclient, f"/console/exemptions/{revoked}/decision", page, {"approve": "true", "reason": "同意"})
    assert answer.status_code == 303
    page = cclient.get("/console/exemptions").text
    answer = post_form(cclient, f"/console/exemptions/{revoked}/revoke", page, {"reason": "业务已结束"})
    assert answer.status_code == 303
    history = cclient.get("/console/exemptions").text
    assert f'data-exemption="{rejected}" data-status="rejected"' in history
    assert f'data-exemption="{revoked}" data-status="revoked"' in history
    assert "已驳回" in history
    assert "已撤销" in history
    # A revoked exemption cannot be revoked again: the API's 409 message, on the console's error page.
    again = post_form(cclient, f"/console/exemptions/{revoked}/revoke", history, {"reason": "再次"})
    assert again.status_code == 409
    api = cclient.post(f"/v1/exemptions/{revoked}/revoke", json={"reason": "再次"}, headers=bearer(inspector_key))
    assert error_detail(again.text) == api.json()["detail"]


def test_the_filer_cannot_decide_with_the_apis_four_eyes_message(
    cclient: TestClient, world: dict[str, int], make_key: KeyMaker
) -> None:
    filer = make_key("inspector", "inspector-filer")
    exemption = file(cclient, filer)
    page = console_as(cclient, filer)
    refused = post_form(cclient, f"/console/exemptions/{exemption}/decision", page, {"approve": "true", "reason": "x"})
    assert refused.status_code == 409
    api = cclient.post(
        f"/v1/exemptions/{exemption}/decision", json={"approve": True, "reason": "x"}, headers=bearer(filer)
    )
    assert api.status_code == 409
    assert "four eyes" in api.json()["detail"]
    assert error_detail(refused.text) == api.json()["detail"]


def test_forms_need_the_csrf_token_and_a_reason(
    cclient: TestClient, world: dict[str, int], source_key: str, inspector_key: str
) -> None:
    exemption = file(cclient, source_key)
    page = console_as(cclient, inspector_key)
    forged = cclient.post(
        f"/console/exemptions/{exemption}/decision", data={"approve": "true", "reason": "x"}, follow_redirects=False
    )
    assert forged.status_code == 403
    blank = post_form(cclient, f"/console/exemptions/{exemption}/decision", page, {"approve": "true", "reason": ""})
    assert blank.status_code == 422
    assert '<td class="field-name">reason</td>' in blank.text
    no_choice = post_form(cclient, f"/console/exemptions/{exemption}/decision", page, {"reason": "x"})
    assert no_choice.status_code == 422
    assert '<td class="field-name">approve</td>' in no_choice.text
    assert cclient.get(f"/v1/exemptions/{exemption}", headers=bearer(inspector_key)).json()["status"] == "requested"


def test_a_scoped_inspector_sees_and_decides_only_its_units(
    cclient: TestClient, world: dict[str, int], source_key: str, make_key: KeyMaker
) -> None:
    inside, outside = file(cclient, source_key), file(cclient, source_key, operator="OP-OUT")
    page = console_as(cclient, make_key("inspector", "dd1-inspector", unit="DD1"))
    assert f'data-exemption="{inside}"' in page
    assert f'data-exemption="{outside}"' not in page
    refused = post_form(cclient, f"/console/exemptions/{outside}/decision", page, {"approve": "true", "reason": "x"})
    assert refused.status_code == 404
    assert error_detail(refused.text) == f"no exemption with id {outside}"
    assert post_form(cclient, f"/console/exemptions/{outside}/revoke", page, {"reason": "x"}).status_code == 404
    assert (
        post_form(
            cclient, f"/console/exemptions/{inside}/decision", page, {"approve": "true", "reason": "x"}
        ).status_code
        == 303
    )


def test_pages_show_stored_values_through_the_catalogue_in_both_languages(
    cclient: TestClient, world: dict[str, int], source_key: str, inspector_key: str
) -> None:
    file(cclient, source_key)
    assert sign_in(cclient, inspector_key).status_code == 303
    breakers = cclient.get("/console/breakers").text
    assert "<td>阈值熔断</td>" in breakers
    assert "<td>rule</td>" not in breakers
    detail = cclient.get(f"/console/alerts/{world['alert_in']}").text
    assert "(民警)" in detail
    assert "(police)" not in detail
    assert "注册登记" in detail  # the event's action
    audit = cclient.get("/console/audit").text
    assert "报备申请" in audit
    assert "exemption.requested" not in audit
    english = cclient.get("/console/exemptions", params={"lang": "en"}).text
    assert "Requests to decide" in english
    assert "operator: OP-IN" in english
    assert "vehicle registration" in english
    breakers_en = cclient.get("/console/breakers").text  # the language is remembered
    assert "<td>rule</td>" in breakers_en
