"""End to end: the real server (`supervision serve`, two uvicorn workers) on a loopback port."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import func, select

from app.db import Database
from app.events.models import Event
from tests.conftest import KeyMaker, Server, start_server, stop_server
from tests.factories import bearer, make_event

pytestmark = pytest.mark.e2e


def rows_with(db: Database, source_event_id: str) -> int:
    with db.session() as session:
        query = select(func.count()).select_from(Event).where(Event.source_event_id == source_event_id)
        return session.scalar(query) or 0


def test_sixteen_concurrent_posts_of_one_event_store_it_once(server: Server, make_key: KeyMaker, db: Database) -> None:
    key = make_key("source", "vr-system")
    event = make_event()
    barrier = threading.Barrier(16)

    def post(_: int) -> int:
        with httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=30) as http:
            barrier.wait()
            return http.post("/v1/events", json=event).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = Counter(pool.map(post, range(16)))
    assert codes == {201: 1, 200: 15}
    assert rows_with(db, event["source_event_id"]) == 1


def test_concurrent_batches_sharing_events_in_other_orders_all_succeed(
    server: Server, make_key: KeyMaker, db: Database
) -> None:
    key = make_key("source", "vr-system")
    shared = [make_event() for _ in range(50)]
    orders = [random.Random(seed).sample(shared, len(shared)) for seed in range(8)]
    barrier = threading.Barrier(len(orders))

    def post(events: list[dict[str, Any]]) -> tuple[int, list[bool]]:
        with httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=60) as http:
            barrier.wait()
            response = http.post("/v1/events/batch", json={"events": events})
            return response.status_code, [item["duplicate"] for item in response.json().get("items", [])]

    with ThreadPoolExecutor(len(orders)) as pool:
        results = list(pool.map(post, orders))
    assert [code for code, _ in results] == [200] * len(orders)
    new = sum(not duplicate for _, flags in results for duplicate in flags)
    assert new == len(shared)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == len(shared)


@pytest.fixture
def writer(server: Server, make_key: KeyMaker) -> Iterator[threading.Event]:
    """Keeps posting events spread over the same day until told to stop."""
    key = make_key("source", "vi-writer")
    stop = threading.Event()
    rng = random.Random(7)

    def run() -> None:
        with httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=30) as http:
            for _ in range(2000):  # bounded, whatever happens to the reader
                if stop.is_set():
                    return
                minute = rng.randrange(0, 24 * 60)
                at = f"2026-11-21T{minute // 60:02d}:{minute % 60:02d}:00+08:00"
                assert http.post("/v1/events", json=make_event(occurred_at=at)).status_code == 201

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield stop
    stop.set()
    thread.join(timeout=30)


def test_pages_never_skip_or_repeat_while_events_arrive(
    server: Server, make_key: KeyMaker, db: Database, writer: threading.Event
) -> None:
    source = bearer(make_key("source", "vr-system"))
    inspector = bearer(make_key("inspector", "inspector-li"))
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        before = []
        for hour in range(0, 24, 2):
            events = [make_event(occurred_at=f"2026-11-21T{hour:02d}:{m:02d}:00+08:00") for m in range(0, 60, 3)]
            response = http.post("/v1/events/batch", json={"events": events}, headers=source)
            before += [item["id"] for item in response.json()["items"]]
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 17, **({"cursor": cursor} if cursor else {})}
            page = http.get("/v1/events", params=params, headers=inspector).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert len(seen) == len(set(seen)), "an event appeared on two pages"
    assert set(before) <= set(seen), "an event stored before paging began was skipped"


def test_a_chunked_body_over_the_limit_is_413(server: Server, make_key: KeyMaker, db: Database) -> None:
    key = make_key("source", "vr-system")

    def body() -> Iterator[bytes]:
        yield b'{"source_event_id": "HUGE", "attributes": {"padding": "'
        for _ in range(80):
            yield b"x" * 16384
        yield b'"}}'

    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        headers = {**bearer(key), "content-type": "application/json"}
        response = http.post("/v1/events", content=body(), headers=headers)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert rows_with(db, "HUGE") == 0


def test_chinese_text_round_trips_through_the_server(server: Server, make_key: KeyMaker, db: Database) -> None:
    source, inspector = make_key("source", "ah-system"), make_key("inspector", "inspector-zhao")
    event = make_event(
        domain="accident_handling",
        action="case_closed",
        object_ref="常公交（直）认字〔2026〕第0042号",
        attributes={"closure": "no_liability", "事故地点": "常德大道与朗州路交叉口"},
    )
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        created = http.post("/v1/events", json=event, headers=bearer(source))
        assert created.status_code == 201
        stored = http.get(f"/v1/events/{created.json()['id']}", headers=bearer(inspector)).json()
    assert stored["object_ref"] == event["object_ref"]
    assert stored["attributes"]["事故地点"] == "常德大道与朗州路交叉口"


def test_a_revoked_key_is_refused_by_every_worker_at_once(server: Server, make_key: KeyMaker, db: Database) -> None:
    from app.auth.models import ApiKey
    from app.auth.service import revoke_key

    key = make_key("inspector", "inspector-revoked")
    with httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=30) as http:
        assert http.get("/v1/events").status_code == 200
        with db.session(write=True) as session:
            key_id = session.scalar(select(ApiKey.id).where(ApiKey.name == "inspector-revoked"))
            assert key_id is not None
            revoke_key(session, key_id=key_id)
        # Fresh connections land on either worker; none may still accept the key.
        codes = {httpx.get(f"{server.base_url}/v1/events", headers=bearer(key)).status_code for _ in range(10)}
    assert codes == {401}


def test_access_log_can_be_turned_off_in_every_worker(migrated: str, tmp_path: Path) -> None:
    quiet = start_server(migrated, tmp_path / "quiet.log", workers=2, env={"SUPERVISION_ACCESS_LOG": "false"})
    try:
        for _ in range(10):
            assert httpx.get(f"{quiet.base_url}/healthz").status_code == 200
    finally:
        stop_server(quiet)
    assert '"GET /healthz' not in quiet.log.read_text()


def test_the_access_log_has_one_json_line_per_request_with_its_id(migrated: str, tmp_path: Path) -> None:
    loud = start_server(migrated, tmp_path / "loud.log")
    try:
        response = httpx.get(f"{loud.base_url}/healthz", headers={"X-Request-ID": "trace-42"})
    finally:
        stop_server(loud)
    lines = [json.loads(line) for line in loud.log.read_text().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "uvicorn.access" and "/healthz" in line["message"]]
    assert response.headers["x-request-id"] == "trace-42"
    assert [line["request_id"] for line in access] == ["trace-42"]
