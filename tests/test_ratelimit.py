"""Rate limits: per API key on ingestion (requests and events, a batch counting its events), per client
address on failed authentication; 429 problems with Retry-After; shared by the workers of a host, and
across hosts through Redis (on this machine at 127.0.0.1:6379); an off switch."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select

from app.config import Settings
from app.db import Database
from app.events.models import Event
from app.main import create_app
from app.ratelimit import SQLiteFileStorage
from tests.conftest import KeyMaker, start_server, stop_server
from tests.factories import bearer, make_event

REDIS_URL = "redis://127.0.0.1:6379/0"


def stored(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Event.source_event_id)))


def count_events(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Event)) or 0


def limited(settings: Settings, **overrides: Any) -> TestClient:
    return TestClient(create_app(Settings(database_url=settings.database_url, bootstrap_admin_key=None, **overrides)))


def assert_429(response: Any, longest_window: int) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= longest_window
    body: dict[str, Any] = response.json()
    assert body["status"] == 429
    assert body["type"] == "/problems/too-many-requests"
    assert body["detail"]
    return body


def test_a_key_over_its_events_limit_gets_429_and_nothing_of_that_request_is_stored(
    settings: Settings, db: Database, source_key: str
) -> None:
    with limited(settings, rate_limit_events="3/minute") as client:
        events = [make_event() for _ in range(4)]
        codes = [client.post("/v1/events", json=event, headers=bearer(source_key)).status_code for event in events[:3]]
        assert codes == [201, 201, 201]
        body = assert_429(client.post("/v1/events", json=events[3], headers=bearer(source_key)), 60)
        assert "events" in body["detail"]
    assert stored(db) == {event["source_event_id"] for event in events[:3]}


def test_a_batch_counts_each_of_its_events(settings: Settings, db: Database, make_key: KeyMaker) -> None:
    exact, over = make_key("source", "exact"), make_key("source", "over")
    with limited(settings, rate_limit_events="5/minute") as client:
        batch = [make_event() for _ in range(5)]
        assert client.post("/v1/events/batch", json={"events": batch}, headers=bearer(exact)).status_code == 200
        assert_429(client.post("/v1/events", json=make_event(), headers=bearer(exact)), 60)
        # Six events in one request from a fresh key: over at once, and not one of them stored.
        six = [make_event() for _ in range(6)]
        assert_429(client.post("/v1/events/batch", json={"events": six}, headers=bearer(over)), 60)
    assert stored(db) == {event["source_event_id"] for event in batch}


def test_each_key_has_its_own_limit(settings: Settings, db: Database, make_key: KeyMaker) -> None:
    first, second = make_key("source", "first"), make_key("source", "second")
    with limited(settings, rate_limit_events="1/minute") as client:
        assert client.post("/v1/events", json=make_event(), headers=bearer(first)).status_code == 201
        assert client.post("/v1/events", json=make_event(), headers=bearer(first)).status_code == 429
        assert client.post("/v1/events", json=make_event(), headers=bearer(second)).status_code == 201
    assert count_events(db) == 2


def test_ingest_requests_are_limited_per_key_whatever_they_hold(settings: Settings, source_key: str) -> None:
    with limited(settings, rate_limit_requests="2/minute") as client:
        for _ in range(2):
            assert client.post("/v1/events/batch", json={"events": []}, headers=bearer(source_key)).status_code == 200
        body = assert_429(client.post("/v1/events/batch", json={"events": []}, headers=bearer(source_key)), 60)
        assert "requests" in body["detail"]


def test_retry_after_covers_the_longest_window_that_refused(settings: Settings, source_key: str) -> None:
    with limited(settings, rate_limit_events="100/second;2/hour") as client:
        for _ in range(2):
            assert client.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201
        response = client.post("/v1/events", json=make_event(), headers=bearer(source_key))
        assert_429(response, 3600)
        assert int(response.headers["retry-after"]) > 3500


def test_the_limit_lifts_when_its_window_passes(settings: Settings, source_key: str) -> None:
    with limited(settings, rate_limit_events="1/second") as client:
        assert client.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201
        response = client.post("/v1/events", json=make_event(), headers=bearer(source_key))
        assert_429(response, 1)
        time.sleep(1.1)
        assert client.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201


def test_failed_keys_from_one_address_are_limited_then_even_a_right_key_waits(
    settings: Settings, inspector_key: str
) -> None:
    app = create_app(Settings(database_url=settings.database_url, rate_limit_auth_failures="3/minute"))
    with (
        TestClient(app, client=("203.0.113.7", 4000)) as guesser,
        TestClient(app, client=("198.51.100.2", 4000)) as other,
    ):
        for n in range(3):
            assert guesser.get("/v1/units", headers=bearer(f"sv_guess-{n}")).status_code == 401
        assert_429(guesser.get("/v1/units", headers=bearer("sv_guess-4")), 60)
        # Over the limit, a right guess is refused too: guessing learns nothing more.
        assert_429(guesser.get("/v1/units", headers=bearer(inspector_key)), 60)
        # Another address is not affected.
        assert other.get("/v1/units", headers=bearer("sv_wrong")).status_code == 401
        assert other.get("/v1/units", headers=bearer(inspector_key)).status_code == 200


def test_a_right_key_does_not_count_as_a_failure(settings: Settings, inspector_key: str) -> None:
    with limited(settings, rate_limit_auth_failures="2/minute") as client:
        for _ in range(10):
            assert client.get("/v1/units", headers=bearer(inspector_key)).status_code == 200
        assert client.get("/v1/units", headers=bearer("sv_wrong")).status_code == 401


def test_the_off_switch_turns_every_limit_off(settings: Settings, source_key: str) -> None:
    off = {
        "rate_limit_enabled": False,
        "rate_limit_events": "1/minute",
        "rate_limit_requests": "1/minute",
        "rate_limit_auth_failures": "1/minute",
    }
    with limited(settings, **off) as client:
        for _ in range(3):
            assert client.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201
            assert client.get("/v1/units", headers=bearer("sv_wrong")).status_code == 401


def test_the_default_limits_let_an_honest_system_through(settings: Settings, source_key: str) -> None:
    """The contract: a key may post at least 5,000 events and 200 requests a second."""
    with TestClient(create_app(settings)) as client:
        batch = {"events": [make_event() for _ in range(1000)]}
        for _ in range(5):
            assert client.post("/v1/events/batch", json=batch, headers=bearer(source_key)).status_code == 200
        for _ in range(200):
            assert client.post("/v1/events/batch", json={"events": []}, headers=bearer(source_key)).status_code == 200


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"supervision-test-{uuid.uuid4().hex}"
    yield prefix
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def test_two_app_instances_share_the_limits_through_redis(
    settings: Settings, db: Database, source_key: str, redis_prefix: str
) -> None:
    shared = {"redis_url": REDIS_URL, "rate_limit_prefix": redis_prefix, "rate_limit_events": "3/minute"}
    with limited(settings, **shared) as one, limited(settings, **shared) as two:
        assert one.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201
        assert two.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201
        assert one.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201
        assert_429(two.post("/v1/events", json=make_event(), headers=bearer(source_key)), 60)
    assert count_events(db) == 3


def test_failed_keys_are_counted_across_app_instances_through_redis(settings: Settings, redis_prefix: str) -> None:
    shared = {"redis_url": REDIS_URL, "rate_limit_prefix": redis_prefix, "rate_limit_auth_failures": "2/minute"}
    with limited(settings, **shared) as one, limited(settings, **shared) as two:
        assert one.get("/v1/units", headers=bearer("sv_a")).status_code == 401
        assert two.get("/v1/units", headers=bearer("sv_b")).status_code == 401
        assert_429(one.get("/v1/units", headers=bearer("sv_c")), 60)


def test_an_unreachable_redis_lets_requests_through(settings: Settings, source_key: str) -> None:
    """A limiter must not take the service down with it."""
    down = {"redis_url": "redis://127.0.0.1:1/0", "rate_limit_events": "1/minute"}
    with limited(settings, **down) as client:
        for _ in range(2):
            assert client.post("/v1/events", json=make_event(), headers=bearer(source_key)).status_code == 201


def test_processes_sharing_a_counter_file_share_the_limit(tmp_path: Path) -> None:
    """What `serve --workers N` gives its workers: one counter, whichever process counts."""
    from limits import parse_many
    from limits.strategies import FixedWindowRateLimiter

    uri = f"supervision+sqlite:///{tmp_path / 'counters.db'}"
    (item,) = parse_many("5/minute")
    one, two = FixedWindowRateLimiter(SQLiteFileStorage(uri)), FixedWindowRateLimiter(SQLiteFileStorage(uri))
    assert one.hit(item, "k", cost=3)
    assert two.hit(item, "k", cost=2)
    assert not one.hit(item, "k")
    assert not two.hit(item, "k")
    assert one.hit(item, "other")
    reset, remaining = two.get_window_stats(item, "k")
    assert remaining == 0
    assert 0 < reset - time.time() <= 60


@pytest.mark.e2e
def test_the_workers_of_a_server_share_one_limit(migrated: str, tmp_path: Path, make_key: KeyMaker) -> None:
    key = make_key("source", "two-workers")
    env = {"SUPERVISION_RATE_LIMIT_EVENTS": "10/minute"}
    server = start_server(migrated, tmp_path / "server.log", workers=2, env=env)
    try:
        codes: Counter[int] = Counter()
        for _ in range(20):  # fresh connections, spread over both workers
            response = httpx.post(f"{server.base_url}/v1/events", json=make_event(), headers=bearer(key), timeout=30)
            codes[response.status_code] += 1
    finally:
        stop_server(server)
    assert codes == {201: 10, 429: 10}


@pytest.mark.parametrize("field", ["rate_limit_events", "rate_limit_requests", "rate_limit_auth_failures"])
def test_a_limit_that_does_not_parse_is_refused_at_start(field: str) -> None:
    with pytest.raises(ValidationError, match="not a rate limit"):
        Settings.model_validate({field: "lots"})


def test_openapi_declares_429_with_retry_after(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path, method in (("/v1/events", "post"), ("/v1/events/batch", "post")):
        answer = document["paths"][path][method]["responses"]["429"]
        assert "Retry-After" in answer["headers"]
        assert "events" in answer["description"]
        assert "application/problem+json" in answer["content"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "401" in operation.get("responses", {}):
                assert "429" in operation["responses"], (method, path)
