"""Helpers of the workflow and jurisdiction tests: an app with test rules, events that raise alerts, moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx2 import Response

from tests.alerts.test_router import COUNT_RULE as OPERATOR_RULE
from tests.alerts.test_router import app_client, police, write_rules
from tests.factories import bearer, make_event

# OPERATOR_RULE (the alerts tests' t-count) warns at 3 registrations by one operator in an hour, trips at 4.
__all__ = ["OPERATOR_RULE", "app_client", "police", "write_rules"]

# Warns at 2 inspections by one business unit in an hour; no trip_at, so only a suspension stops it.
STATION_RULE = """\
- id: t-station
  type: count
  label_zh: 测试-检测站单小时检测
  label_en: test - inspections by a station in an hour
  domains: [vehicle_inspection]
  filter: {action: inspection}
  group_by: business_unit
  window: 1h
  warn_at: 2
  severity: high
"""


ASSIGNEE = "DD1"  # a registered org unit that supervisions are assigned to


def registration(minute: int, operator: dict[str, Any], hour: int = 9) -> dict[str, Any]:
    """A registration on 2026-11-21 at hour:minute, Asia/Shanghai time."""
    return make_event(operator=operator, occurred_at=f"2026-11-21T{hour:02d}:{minute:02d}:00+08:00")


def inspection(
    minute: int, station: str = "IS-07", operator: dict[str, Any] | None = None, hour: int = 10
) -> dict[str, Any]:
    """A vehicle inspection by ``station`` on 2026-11-21 at hour:minute, Asia/Shanghai time."""
    return make_event(
        domain="vehicle_inspection",
        action="inspection",
        occurred_at=f"2026-11-21T{hour:02d}:{minute:02d}:00+08:00",
        operator=operator or police("OP5", "U1"),
        business_unit={"id": station, "kind": "inspection_station"},
        attributes={"result": "pass", "duration_seconds": 600, "vehicle_type": "car"},
    )


def post_event(client: TestClient, key: str, event: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/events", json=event, headers=bearer(key))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def raise_operator_alert(client: TestClient, key: str, operator: dict[str, Any], *, events: int = 3) -> int:
    """``events`` registrations by ``operator`` at 09:00 (3 warn, 4 trip t-count): the alert's id."""
    results = [post_event(client, key, registration(minute, operator)) for minute in range(events)]
    (alert_id,) = results[-1]["alerts"]
    assert isinstance(alert_id, int)
    return alert_id


def raise_station_alert(client: TestClient, key: str, station: str = "IS-07", hour: int = 10) -> int:
    """Two inspections by ``station``: a t-station alert whose subject is the business unit; its id."""
    results = [post_event(client, key, inspection(minute, station, hour=hour)) for minute in range(2)]
    (alert_id,) = results[-1]["alerts"]
    assert isinstance(alert_id, int)
    return alert_id


def put_unit(client: TestClient, admin_key: str, unit_id: str, parent: str | None = None) -> None:
    body = {"parent": parent, "label_zh": unit_id, "label_en": unit_id}
    response = client.put(f"/v1/units/{unit_id}", json=body, headers=bearer(admin_key))
    assert response.status_code in (200, 201), response.text


def in_seconds(seconds: float) -> str:
    """An RFC 3339 time with an offset, ``seconds`` from now (negative: in the past)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def aware(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, text
    return parsed


def move(
    client: TestClient,
    key: str,
    alert_id: int,
    to: str,
    reason: str = "依规处置",
    *,
    if_match: str | None = None,
    **fields: Any,
) -> Response:
    headers = bearer(key) | ({"If-Match": if_match} if if_match is not None else {})
    return client.post(
        f"/v1/alerts/{alert_id}/transitions", json={"to": to, "reason": reason, **fields}, headers=headers
    )


def read_alert(client: TestClient, key: str, alert_id: int) -> tuple[dict[str, Any], str]:
    """The alert's detail and its ETag."""
    response = client.get(f"/v1/alerts/{alert_id}", headers=bearer(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, response.headers["etag"]


def error_locs(response: Response) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["errors"]]


def is_problem(response: Response, status: int) -> bool:
    return bool(
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["status"] == status
    )
