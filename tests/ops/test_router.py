"""Operations: /healthz, /readyz, /metrics and request ids, through the ASGI app and the real server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.main import create_app
from tests.conftest import Server
from tests.factories import bearer, make_event

UNREACHABLE_DATABASE = "postgresql://postgres@127.0.0.1:1/nothing"


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def scrape(client: TestClient) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


@pytest.fixture
def bare_client(tmp_path: Path) -> Iterator[TestClient]:
    """An app on a fresh, empty SQLite file: reachable, but no migration has run."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", bootstrap_admin_key=None)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


# --- /healthz and /readyz ----------------------------------------------------------------------


def test_healthz_answers_200(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_needs_no_database() -> None:
    settings = Settings(database_url=UNREACHABLE_DATABASE, bootstrap_admin_key=None)
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/healthz").status_code == 200


def test_readyz_answers_ready_on_the_migrated_database(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_readyz_is_503_problem_when_the_schema_is_not_at_head(bare_client: TestClient) -> None:
    response = bare_client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503
    assert {"type", "title", "detail"} <= set(body)
    assert "migrat" in body["detail"]


def test_readyz_is_503_problem_when_the_database_is_unreachable() -> None:
    settings = Settings(database_url=UNREACHABLE_DATABASE, bootstrap_admin_key=None)
    with TestClient(create_app(settings)) as test_client:
        response = test_client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 503
    assert "unreachable" in body["detail"]
    assert "127.0.0.1" not in response.text  # the database's address is nobody's business


# --- /metrics ----------------------------------------------------------------------------------


def test_metrics_is_prometheus_text(client: TestClient) -> None:
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"supervision_http_requests", "supervision_events_ingested"} <= names


def test_metrics_count_ingested_events_by_domain_and_source(client: TestClient, source_key: str) -> None:
    labels = {"domain": "vehicle_registration", "source": "vr-system"}
    exams = {"domain": "driver_testing", "source": "vr-system"}
    before = scrape(client)
    events = [make_event() for _ in range(3)]
    for event in events:
        assert client.post("/v1/events", json=event, headers=bearer(source_key)).status_code == 201
    exam = make_event(domain="driver_testing", action="exam", attributes={"subject": 2, "result": "pass", "score": 90})
    assert client.post("/v1/events", json=exam, headers=bearer(source_key)).status_code == 201
    # A duplicate and a refused event are not ingested.
    assert client.post("/v1/events", json=events[0], headers=bearer(source_key)).status_code == 200
    conflict = {**events[1], "action": "transfer"}
    assert client.post("/v1/events", json=conflict, headers=bearer(source_key)).status_code == 409
    after = scrape(client)

    name = "supervision_events_ingested_total"
    assert metric(after, name, **labels) - metric(before, name, **labels) == 3
    assert metric(after, name, **exams) - metric(before, name, **exams) == 1
    duplicates = "supervision_events_duplicate_total"
    assert metric(after, duplicates, source="vr-system") - metric(before, duplicates, source="vr-system") == 1


def test_metrics_count_requests_by_route_template_and_status(
    client: TestClient, source_key: str, inspector_key: str
) -> None:
    created = {"method": "POST", "route": "/v1/events", "status": "201"}
    detail = {"method": "GET", "route": "/v1/events/{event_id}", "status": "200"}
    before = scrape(client)
    ids = [client.post("/v1/events", json=make_event(), headers=bearer(source_key)).json()["id"] for _ in range(2)]
    for event_id in ids:
        assert client.get(f"/v1/events/{event_id}", headers=bearer(inspector_key)).status_code == 200
    after = scrape(client)

    name = "supervision_http_requests_total"
    assert metric(after, name, **created) - metric(before, name, **created) == 2
    assert metric(after, name, **detail) - metric(before, name, **detail) == 2
    assert not any(f"/v1/events/{event_id}" in after for event_id in ids), "raw paths make unbounded labels"


def test_metrics_label_unknown_paths_as_one_route(client: TestClient) -> None:
    unmatched = {"route": "unmatched", "status": "404"}
    before = scrape(client)
    for n in range(3):
        assert client.get(f"/no/such/path/{n}").status_code == 404
    after = scrape(client)
    name = "supervision_http_requests_total"
    assert metric(after, name, **unmatched) - metric(before, name, **unmatched) == 3
    assert "/no/such/path" not in after


# --- X-Request-ID ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/units", "/no/such/path"])
def test_every_response_carries_a_request_id(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers.get("x-request-id")


def test_each_request_gets_its_own_id(client: TestClient) -> None:
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_a_problem_names_the_request_id_of_its_response(client: TestClient) -> None:
    response = client.get("/v1/units")
    assert response.status_code == 401
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("incoming", ["req-42", "2f1c9a7e-0b7d-4c55-9d3e-6f1b2a3c4d5e", "gw:node-3.r_17"])
def test_a_sane_incoming_request_id_is_echoed(client: TestClient, incoming: str) -> None:
    response = client.get("/v1/units", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming
    assert response.json()["request_id"] == incoming


@pytest.mark.parametrize("incoming", ["has spaces in it", "x" * 200, "a\"b'<script>", "id;drop", ""])
def test_an_unsafe_incoming_request_id_is_replaced(client: TestClient, incoming: str) -> None:
    response = client.get("/v1/units", headers={"X-Request-ID": incoming})
    replaced = response.headers["x-request-id"]
    assert replaced
    assert replaced != incoming
    assert " " not in replaced
    assert len(replaced) <= 64
    assert response.json()["request_id"] == replaced


# --- the real server ---------------------------------------------------------------------------


def healthz_count(text: str) -> float:
    return metric(text, "supervision_http_requests_total", route="/healthz")


@pytest.mark.e2e
def test_metrics_on_the_real_server_add_up_every_worker(server: Server) -> None:
    requests = 40
    before = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert before.status_code == 200

    def probe(_: int) -> int:
        # A new connection per request, so the kernel hands them to whichever worker accepts.
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            return http.get("/healthz").status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(probe, range(requests)))
    assert codes == [200] * requests

    # Several scrapes, each on a new connection: whichever worker answers, it reports the total.
    for _ in range(6):
        after = httpx.get(f"{server.base_url}/metrics", timeout=10)
        assert after.status_code == 200
        assert after.headers["content-type"].startswith("text/plain")
        assert healthz_count(after.text) - healthz_count(before.text) == requests
