"""The OpenAPI document says what the server enforces: statuses, constraints, operation ids; and a 405
names every method of its path."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.events.domains import SPECS
from app.events.openapi import variant_name
from app.fields import MAX_INT_ROW_ID, MAX_ROW_ID
from app.pagination import CURSOR_PATTERN
from app.reports.service import PERIOD_PATTERN
from tests.factories import make_event

METHODS = ("get", "put", "post", "delete", "patch")

# What each operation may answer, as the server really gives it (429: app/ratelimit.py).
DECLARED: dict[str, set[int]] = {
    "healthz": {200},
    "readyz": {200, 503},
    "get_metrics": {200},
    "post_event": {200, 201, 400, 401, 403, 409, 413, 422, 429, 503},
    "post_event_batch": {200, 400, 401, 403, 409, 413, 422, 429, 503},
    "list_events": {200, 401, 403, 422, 429, 503},
    "get_event": {200, 401, 403, 404, 422, 429, 503},
    "put_unit": {200, 201, 400, 401, 403, 413, 422, 429, 503},
    "list_units": {200, 401, 403, 422, 429, 503},
    "get_unit": {200, 401, 403, 404, 422, 429, 503},
    "list_rules": {200, 401, 403, 422, 429, 503},
    "validate_rules": {200, 401, 403, 413, 415, 422, 429, 503},
    "reload_rules": {200, 401, 403, 422, 429, 503},
    "get_rule": {200, 401, 403, 404, 422, 429, 503},
    "backtest_rule": {200, 400, 401, 403, 404, 413, 422, 429, 503},
    "list_alerts": {200, 401, 403, 422, 429, 503},
    "get_alert": {200, 401, 403, 404, 422, 429, 503},
    "transition_alert": {200, 400, 401, 403, 404, 409, 412, 413, 422, 429, 503},
    "list_breakers": {200, 401, 403, 422, 429, 503},
    "check_breakers": {200, 401, 422, 429, 503},
    "get_breaker": {200, 401, 403, 404, 422, 429, 503},
    "reset_breaker": {200, 400, 401, 403, 404, 409, 413, 422, 429, 503},
    "request_exemption": {201, 400, 401, 403, 413, 422, 429, 503},
    "list_exemptions": {200, 401, 403, 422, 429, 503},
    "get_exemption": {200, 401, 403, 404, 422, 429, 503},
    "decide_exemption": {200, 400, 401, 403, 404, 409, 413, 422, 429, 503},
    "revoke_exemption": {200, 400, 401, 403, 404, 409, 413, 422, 429, 503},
    "post_scan": {201, 400, 401, 403, 413, 422, 429, 503},
    "list_scans": {200, 401, 403, 422, 429, 503},
    "get_scan": {200, 401, 403, 404, 422, 429, 503},
    "get_summary": {200, 401, 403, 422, 429, 503},
    "list_audit": {200, 401, 403, 422, 429, 503},
    "verify_audit": {200, 401, 403, 429, 503},
    "post_audit_checkpoint": {201, 401, 403, 429, 503},
    "create_webhook": {201, 400, 401, 403, 413, 422, 429, 503},
    "list_webhooks": {200, 401, 403, 422, 429, 503},
    "get_webhook": {200, 401, 403, 404, 422, 429, 503},
    "delete_webhook": {204, 401, 403, 404, 422, 429, 503},
    "test_webhook": {202, 401, 403, 404, 422, 429, 503},
    "list_deliveries": {200, 401, 403, 404, 422, 429, 503},
    "redeliver": {202, 401, 403, 404, 409, 422, 429, 503},
}


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_operation_has_a_short_unique_operation_id(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][a-z_]{2,29}", operation_id), operation_id
    assert {"post_event", "post_event_batch", "list_events", "get_event"} <= set(ids)
    assert {"list_alerts", "get_alert", "transition_alert", "reset_breaker", "list_scans"} <= set(ids)


def test_the_title_is_ascii_and_the_description_keeps_the_chinese_name(document: dict[str, Any]) -> None:
    assert document["info"]["title"].isascii()
    assert "交管业务综合监管平台" in document["info"]["description"]


def test_each_operation_declares_the_statuses_the_server_gives(document: dict[str, Any]) -> None:
    declared = {op["operationId"]: {int(code) for code in op["responses"]} for _, _, op in operations(document)}
    assert declared == DECLARED


def test_the_declared_statuses_follow_from_each_operations_shape(document: dict[str, Any]) -> None:
    """A route added later is held to the same: a key means 401, a body 400 (when JSON), 413 and 422, a
    path parameter 404, and every /v1 operation may meet an unavailable database (503)."""
    for method, path, operation in operations(document):
        codes = {int(code) for code in operation["responses"]}
        label = f"{method.upper()} {path}"
        if not path.startswith("/v1/"):
            continue
        assert {401, 429, 503} <= codes, label  # 429: failed keys from the address are limited
        body = operation.get("requestBody")
        if body is not None:
            assert {413, 422} <= codes, label
            if "application/json" in body["content"]:
                assert 400 in codes, label
        if any(p["in"] == "path" for p in operation.get("parameters", [])) and method != "put":  # PUT creates
            assert {404, 422} <= codes, label
        if operation.get("parameters"):
            assert 422 in codes, label


def test_every_problem_is_declared_as_problem_json(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for code, response in operation["responses"].items():
            if int(code) < 400:
                continue
            assert list(response["content"]) == ["application/problem+json"], f"{method} {path} {code}"
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ProblemOut"}, f"{method} {path} {code}"
            if int(code) == 503:
                assert "Retry-After" in response.get("headers", {}) or path == "/readyz"
            if int(code) == 429:
                assert "Retry-After" in response.get("headers", {}), f"{method} {path}"
            if int(code) == 401:
                assert "WWW-Authenticate" in response["headers"]


def test_integer_path_ids_state_their_range(document: dict[str, Any]) -> None:
    found = 0
    for _, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
                # The column's range: events have BIGINT ids, alerts, breakers and scans INTEGER ones.
                assert parameter["schema"]["minimum"] == 1, path
                top = MAX_ROW_ID if path.startswith("/v1/events/") else MAX_INT_ROW_ID
                assert parameter["schema"]["maximum"] == top, path
                found += 1
            elif parameter["in"] == "path":
                assert parameter["schema"]["pattern"] == r"^\S(?:.*\S)?$", path
                assert parameter["schema"]["maxLength"] == 64, path
    assert found == 15


def test_cursors_and_periods_state_their_format(document: dict[str, Any]) -> None:
    cursors = 0
    for _, path, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "cursor":
                (text, _) = parameter["schema"]["anyOf"]
                assert text == {"type": "string", "minLength": 1, "maxLength": 512, "pattern": CURSOR_PATTERN}, path
                cursors += 1
    assert cursors == 9
    (period,) = [p for p in document["paths"]["/v1/reports/summary"]["get"]["parameters"] if p["name"] == "period"]
    assert period["schema"]["anyOf"][0]["pattern"] == PERIOD_PATTERN


@pytest.mark.parametrize(
    ("period", "valid"),
    [("2026", True), ("2026-03", True), ("2026-Q1", True), ("2026-13", False), ("1999", False), ("2026-Q0", False)],
)
def test_the_period_pattern_agrees_with_the_server(
    client: TestClient, inspector_key: str, period: str, valid: bool
) -> None:
    assert bool(re.fullmatch(PERIOD_PATTERN, period)) is valid
    response = client.get("/v1/reports/summary", params={"period": period}, headers=_bearer(inspector_key))
    assert response.status_code == (200 if valid else 422), response.text


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_event_body_is_a_union_discriminated_on_domain(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    event = schemas["EventIn"]
    assert event["discriminator"]["propertyName"] == "domain"
    assert set(event["discriminator"]["mapping"]) == {domain.value for domain in SPECS}
    for domain, spec in SPECS.items():
        variant = schemas[variant_name(domain)]
        assert variant["properties"]["domain"]["const"] == domain.value
        assert variant["properties"]["action"]["enum"] == list(spec.actions)
        assert set(variant["properties"]["attributes"]["properties"]) == set(spec.attributes)
        assert variant["additionalProperties"] is False
    closed = schemas[variant_name(next(d for d in SPECS if d.value == "accident_handling"))]
    (condition,) = closed["allOf"]
    assert condition["if"]["properties"]["action"]["const"] == "case_closed"
    assert condition["then"]["properties"]["attributes"]["required"] == ["closure"]
    batch_items = schemas["BatchIn"]["properties"]["events"]["items"]
    assert batch_items == {"$ref": "#/components/schemas/EventIn"}


def test_the_event_union_changes_no_validation(client: TestClient, source_key: str) -> None:
    """The runtime model is untouched: an unknown action is still refused by name at `action`."""
    response = client.post("/v1/events", json=make_event(action="fly"), headers=_bearer(source_key))
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "action"]]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_a_405_allows_every_method_of_its_path(client: TestClient, document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        served = {method.upper() for method in item if method in METHODS}
        for method in ("OPTIONS", "DELETE", "PATCH"):
            if method in served:
                continue
            response = client.request(method, _concrete(path))
            assert response.status_code == 405, f"{method} {path}: {response.status_code}"
            assert response.headers["content-type"].startswith("application/problem+json")
            assert set(response.headers["allow"].split(", ")) == served, f"{method} {path}"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/scans", "GET, POST"),
        ("DELETE", "/v1/units/ZD", "GET, PUT"),
        ("GET", "/v1/events/batch", "POST"),
        ("GET", "/v1/rules/validate", "POST"),
        ("GET", "/v1/rules/reload", "POST"),
        ("POST", "/v1/breakers/check", "GET"),
        ("PUT", "/v1/events/7", "GET"),
    ],
)
def test_a_concrete_path_is_not_taken_for_a_parameter(client: TestClient, method: str, path: str, allow: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
