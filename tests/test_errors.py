"""Every error is RFC 9457 problem+json: unknown paths, wrong methods, validation, and unexpected failures."""

from __future__ import annotations

import os
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.db import Database
from app.events import service as events_service
from app.events.models import Event
from app.units.models import Unit
from tests.conftest import TEST_DB_ENV
from tests.factories import bearer, make_event

ON_POSTGRESQL = bool(os.environ.get(TEST_DB_ENV))

PROBLEM_FIELDS = {"type", "title", "status", "detail"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert PROBLEM_FIELDS <= set(body)
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert body["type"]
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    return body


def count(db: Database, model: type[Event] | type[Unit]) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize("path", ["/nothing-here", "/v1/nothing-here", "/v1/events/1/nothing"])
def test_an_unknown_path_is_404_problem(client: TestClient, path: str) -> None:
    assert_problem(client.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/v1/events", "POST"), ("PATCH", "/v1/units/ZD", "PUT"), ("POST", "/healthz", "GET")],
)
def test_a_wrong_method_is_405_problem(client: TestClient, method: str, path: str, allowed: str) -> None:
    response = client.request(method, path)
    assert_problem(response, 405)
    assert allowed in response.headers["allow"]


def test_an_unexpected_exception_is_a_500_problem_that_hides_the_cause(
    client: TestClient, source_key: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_ingest = events_service.ingest

    def failing_ingest(*args: Any, **kwargs: Any) -> Any:
        real_ingest(*args, **kwargs)  # the rows are written, then something unforeseen breaks
        raise RuntimeError("boom secret")

    monkeypatch.setattr(events_service, "ingest", failing_ingest)
    event = make_event(operator={"id": "P1", "kind": "police", "unit": "NEW-UNIT"})
    response = client.post("/v1/events", json=event, headers=bearer(source_key))

    body = assert_problem(response, 500)
    assert body["request_id"] == response.headers["x-request-id"]
    assert "boom" not in response.text
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    assert count(db, Event) == 0
    assert count(db, Unit) == 0


def requests_answered(client: TestClient, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "supervision_http_requests_total" and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def test_a_500_is_counted_in_the_metrics(client: TestClient, source_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_ingest(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(events_service, "ingest", failing_ingest)
    labels = {"method": "POST", "route": "/v1/events", "status": "500"}
    before = requests_answered(client, **labels)
    assert client.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 500
    assert requests_answered(client, **labels) - before == 1


def test_a_500_problem_names_the_callers_request_id(
    client: TestClient, source_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_ingest(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom secret")

    monkeypatch.setattr(events_service, "ingest", failing_ingest)
    headers = {**bearer(source_key), "X-Request-ID": "trace-500-check"}
    response = client.post("/v1/events", json=make_event(), headers=headers)
    assert assert_problem(response, 500)["request_id"] == "trace-500-check"
    assert response.headers["x-request-id"] == "trace-500-check"


def test_the_service_keeps_answering_after_a_500(
    client: TestClient, source_key: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_ingest(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(events_service, "ingest", failing_ingest)
        assert client.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 500
    assert client.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201
    assert count(db, Event) == 1


def test_a_validation_error_lists_each_bad_field(client: TestClient, source_key: str) -> None:
    event = make_event(occurred_at="2026-11-21T09:30:00", colour="blue")
    del event["domain"]
    response = client.post("/v1/events", json=event, headers=bearer(source_key))
    body = assert_problem(response, 422)
    errors = body["errors"]
    assert isinstance(errors, list)
    for error in errors:
        assert isinstance(error["loc"], list)
        assert isinstance(error["msg"], str)
        assert error["msg"]
    locs = [error["loc"] for error in errors]
    assert ["body", "domain"] in locs
    assert ["body", "colour"] in locs
    assert ["body", "occurred_at"] in locs


def test_a_domain_validation_error_has_the_same_shape(client: TestClient, admin_key: str) -> None:
    body = {"parent": "NO-SUCH-UNIT", "label_zh": "一大队", "label_en": "Brigade 1"}
    problem = assert_problem(client.put("/v1/units/DD1", json=body, headers=bearer(admin_key)), 422)
    assert [error["loc"] for error in problem["errors"]] == [["body", "parent"]]
    assert all(isinstance(error["msg"], str) and error["msg"] for error in problem["errors"])


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[1, 2, 3]", b'"just a string"', b'{"label_zh": "a", "label_en": "b",}'],
)
def test_a_body_that_is_not_an_object_is_422_not_500(client: TestClient, admin_key: str, content: bytes) -> None:
    headers = {**bearer(admin_key), "content-type": "application/json"}
    response = client.put("/v1/units/ZD", content=content, headers=headers)
    assert_problem(response, 422)
    assert response.json()["errors"]


def test_a_bad_query_parameter_is_422_not_500(client: TestClient, inspector_key: str) -> None:
    response = client.get("/v1/units", params={"limit": "lots"}, headers=bearer(inspector_key))
    body = assert_problem(response, 422)
    assert ["query", "limit"] in [error["loc"] for error in body["errors"]]


def test_a_body_that_is_not_utf8_is_a_client_error_not_500(client: TestClient, admin_key: str) -> None:
    headers = {**bearer(admin_key), "content-type": "application/json"}
    response = client.put("/v1/units/ZD", content=b'{"label_zh": "\xff\xfe", "label_en": "x"}', headers=headers)
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/units/a%00b",
        "/v1/units?parent=a%00b",
        "/v1/units?cursor=WyJ1bml0cyIsImFcdTAwMDBiIl0",  # a well-formed units cursor holding "a\u0000b"
        "/v1/events?operator=a%00b",
        "/v1/events?business_unit=a%00b",
        "/v1/events?agent=a%00b",
        "/v1/events?source=a%00b",
        "/v1/events?action=a%00b",
    ],
)
def test_a_nul_in_an_id_parameter_is_not_a_500(client: TestClient, inspector_key: str, path: str) -> None:
    response = client.get(path, headers=bearer(inspector_key))
    assert response.status_code in (200, 404, 422), response.text
    if response.status_code == 200:
        assert response.json()["items"] == []
    else:
        assert_problem(response, response.status_code)


def test_an_unreachable_database_is_a_503_to_retry_not_a_500() -> None:
    from app.config import Settings
    from app.main import create_app

    app = create_app(Settings(database_url="postgresql://postgres@127.0.0.1:1/nothing"))
    with TestClient(app) as unreachable:
        response = unreachable.get("/v1/events", headers=bearer("sv_any-key"))
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "1"
    assert "Traceback" not in response.text


def test_sql_the_database_cannot_run_is_a_500_not_a_503_to_retry(
    client: TestClient, source_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (SQLite's SQLITE_ERROR: a syntax error) is not a busy database: retrying would never help."""
    from sqlalchemy import text

    def broken_ingest(session: Any, **_kwargs: Any) -> Any:
        session.execute(text("SELEC 1"))

    monkeypatch.setattr(events_service, "ingest", broken_ingest)
    response = client.post("/v1/events", json=make_event(), headers=bearer(source_key))
    assert_problem(response, 500)
    assert "retry-after" not in response.headers
