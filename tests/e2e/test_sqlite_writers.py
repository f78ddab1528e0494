"""SQLite under light write contention: writers wait for the write lock (up to the busy timeout), not fail.

Each test runs on a SQLite file of its own, whatever database the rest of the suite uses: this is
about the default SQLite set-up.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from app.auth.service import Role, create_key
from app.config import Settings
from app.db import Database
from app.main import create_app
from app.migrate import upgrade_head
from tests.conftest import ROOT, Server, start_server, stop_server
from tests.factories import bearer, make_event

ADMIN_KEY = "sqlite-writers-admin-key"


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('writers') / 'writers.db'}"
    upgrade_head(Settings(database_url=url).database_url)
    return url


def source_key(url: str, name: str) -> str:
    db = Database(Settings(database_url=url))
    try:
        with db.session(write=True) as session:
            return create_key(session, name=name, role=Role.SOURCE).secret
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def sqlite_server(sqlite_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The loops below post far past a key's rate limit (300 requests a second): writers are what is tested here.
    env = {"SUPERVISION_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY, "SUPERVISION_RATE_LIMIT_ENABLED": "false"}
    running = start_server(sqlite_url, tmp_path_factory.mktemp("writers-log") / "server.log", workers=2, env=env)
    yield running
    stop_server(running)


@pytest.mark.e2e
def test_writers_wait_for_a_scan_instead_of_failing(sqlite_server: Server, sqlite_url: str) -> None:
    """Two workers; a scan loop, an empty-batch loop and four clients posting events, for a few seconds."""
    key = source_key(sqlite_url, "contention")
    with httpx.Client(base_url=sqlite_server.base_url, headers=bearer(key), timeout=60) as http:
        for n in range(4):
            batch = [make_event(source_event_id=f"SEED-{n}-{i:04d}") for i in range(500)]
            assert http.post("/v1/events/batch", json={"events": batch}).status_code == 200
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + 4

    def loop(name: str, send: str, headers: dict[str, str]) -> None:
        n = 0
        with httpx.Client(base_url=sqlite_server.base_url, headers=headers, timeout=60) as http:
            while time.monotonic() < stop:
                n += 1
                if send == "scan":
                    status = http.post("/v1/scans", json={}).status_code
                elif send == "empty":
                    status = http.post("/v1/events/batch", json={"events": []}).status_code
                else:
                    status = http.post("/v1/events", json=make_event(source_event_id=f"{name}-{n}")).status_code
                with lock:
                    codes[f"{send} {status}"] += 1

    threads = [
        threading.Thread(target=loop, args=("scan", "scan", bearer(ADMIN_KEY))),
        threading.Thread(target=loop, args=("empty", "empty", bearer(key))),
        *(threading.Thread(target=loop, args=(f"w{i}", "event", bearer(key))) for i in range(4)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {name.split()[1] for name in codes} <= {"200", "201"}, codes
    assert codes["scan 201"] >= 1, codes
    assert codes["empty 200"] >= 1, codes
    assert codes["event 201"] >= 4, codes


def hold_write_lock(path: str, seconds: float, taken: threading.Event) -> None:
    """Another process's writer: holds SQLite's write lock for `seconds`."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    taken.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


@pytest.mark.parametrize(("busy_timeout_ms", "held", "expected"), [(5_000, 1.5, 201), (500, 3.0, 503)])
def test_a_writer_waits_the_busy_timeout_for_the_lock_then_answers_503_with_retry_after(
    sqlite_url: str, busy_timeout_ms: int, held: float, expected: int
) -> None:
    settings = Settings(database_url=sqlite_url, sqlite_busy_timeout_ms=busy_timeout_ms)
    key = source_key(sqlite_url, f"waiter-{busy_timeout_ms}")
    path = sqlite_url.removeprefix("sqlite:///")
    with TestClient(create_app(settings)) as client:
        taken = threading.Event()
        holder = threading.Thread(target=hold_write_lock, args=(path, held, taken))
        holder.start()
        taken.wait()
        started = time.monotonic()
        response = client.post("/v1/events", json=make_event(), headers=bearer(key))
        waited = time.monotonic() - started
        holder.join()
    assert response.status_code == expected, response.text
    if expected == 201:
        assert waited >= held - 0.2  # it queued behind the other writer
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        assert busy_timeout_ms / 1000 - 0.1 <= waited < held


def test_the_sqlite_writers_benchmark_runs() -> None:
    """bench/sqlite_writers.py, whose figures the README quotes, still runs (briefly)."""
    result = subprocess.run(
        [sys.executable, "bench/sqlite_writers.py", "--writers", "2", "--seconds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "writers" in result.stdout


def test_the_default_busy_timeout_is_several_seconds() -> None:
    assert 5_000 <= Settings().sqlite_busy_timeout_ms <= 60_000
