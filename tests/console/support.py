"""Helpers of the console tests: a world with alerts inside and outside DD1, and signing in with a key."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from httpx2 import Response

from tests.jurisdiction.conftest import TREE, trip_operator
from tests.workflow.support import put_unit, raise_station_alert


def build_world(client: TestClient, source_key: str, admin_key: str) -> dict[str, int]:
    """Units ZD > DD1 > DD1-ZD1 and ZD > DD2; a tripped alert (and open breaker) in DD1-ZD1 and in DD2;
    a station alert (a business unit subject) in U1 (the assignee of supervisions is DD1)."""
    for unit_id, parent in TREE:
        put_unit(client, admin_key, unit_id, parent)
    inside = trip_operator(client, source_key, "OP-IN", "DD1-ZD1")
    outside = trip_operator(client, source_key, "OP-OUT", "DD2")
    station = raise_station_alert(client, source_key, "IS-07")
    return {
        "alert_in": inside["alert"],
        "breaker_in": inside["breaker"],
        "alert_out": outside["alert"],
        "breaker_out": outside["breaker"],
        "station_alert": station,
    }


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: TestClient, key: str) -> Response:
    """Sign in through the form, as a browser does: the page, then the form with its CSRF token."""
    form_page = client.get("/console/signin")
    assert form_page.status_code == 200
    return client.post(
        "/console/signin",
        data={"key": key, "csrf": csrf_of(form_page.text), "next": "/console/alerts"},
        follow_redirects=False,
    )


def post_form(client: TestClient, path: str, page: str, fields: dict[str, Any]) -> Response:
    """Post a form of the console with the CSRF token of ``page`` (a console page's HTML)."""
    return client.post(path, data={"csrf": csrf_of(page), **fields}, follow_redirects=False)
