"""Crash and outage, from outside, on PostgreSQL: the server killed with SIGKILL while batches are in flight,
and the database restarted under clients posting events.

The database is a private PostgreSQL cluster this module makes (initdb into a temporary folder, on a free
loopback port), so that restarting it disturbs nobody: the shared server at 127.0.0.1:5432 serves other
test runs at the same time. These tests run whatever database the rest of the suite uses, and they fail,
never skip, when no cluster can be made (set SUPERVISION_PG_BIN to the folder of `initdb` and `pg_ctl` if
PostgreSQL 15 is not where Debian puts it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from app.auth.service import Role, create_key
from app.config import Settings
from app.db import Database
from app.events.models import Event
from app.migrate import upgrade_head
from tests.conftest import Server, free_port, start_server, stop_server
from tests.factories import auxiliary, bearer, make_event

pytestmark = pytest.mark.e2e

PG_BIN = Path(os.environ.get("SUPERVISION_PG_BIN", "/usr/lib/postgresql/15/bin"))
BATCHES = 16
BATCH_SIZE = 250
CLIENTS = 4
HANG = 10.0  # no answer may take longer than this, database down or not


@dataclass
class Cluster:
    """A private PostgreSQL cluster: its own data folder, socket folder and port."""

    root: Path
    port: int
    as_postgres: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def ctl(self, *args: str) -> None:
        command = [*self.as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log")]
        subprocess.run([*command, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        self.ctl("-w", "-o", options, "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        admin = create_engine(Settings(database_url=self.url()).database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = self.url(name)
        upgrade_head(Settings(database_url=url).database_url)
        return url


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"no PostgreSQL binaries at {PG_BIN} (set SUPERVISION_PG_BIN): the fault tests cannot run")
    root = Path(tempfile.mkdtemp(prefix="supervision-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: the cluster belongs to the postgres user.
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    made = Cluster(root=root, port=free_port(), as_postgres=as_postgres)
    try:
        subprocess.run(
            [*as_postgres, str(PG_BIN / "initdb"), "-D", str(made.data), "-A", "trust", "-U", "postgres"]
            + ["-E", "UTF8", "--locale=C", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        made.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        output = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"could not make a private PostgreSQL cluster: {exc}\n{output.decode(errors='replace')}")
    try:
        yield made
    finally:
        subprocess.run(
            [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(made.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def make_keys(url: str, *roles: Role) -> list[str]:
    db = Database(Settings(database_url=url, bootstrap_admin_key=None))
    try:
        with db.session(write=True) as session:
            return [create_key(session, name=f"{role.value}-faults", role=role).secret for role in roles]
    finally:
        db.dispose()


def count_events(url: str, ids: list[str] | None = None) -> int:
    engine = create_engine(Settings(database_url=url).database_url)
    try:
        with engine.connect() as conn:
            query = select(func.count()).select_from(Event)
            if ids is not None:
                query = query.where(Event.source_event_id.in_(ids))
            return conn.scalar(query) or 0
    finally:
        engine.dispose()


def batch_events(batch: int) -> list[dict[str, Any]]:
    """One batch: its own ids; operators and times shared with the other batches, so rules count them together."""
    events = []
    for i in range(BATCH_SIZE):
        minute = (batch * 7 + i) % 600
        at = f"2026-11-21T{8 + minute // 60:02d}:{minute % 60:02d}:00+08:00"
        operator = auxiliary(operator_id=f"A{2000 + i % 5}", officer=f"P{1000 + i % 3}")
        events.append(make_event(source_event_id=f"CRASH-{batch:02d}-{i:04d}", occurred_at=at, operator=operator))
    return events


def test_a_server_killed_mid_batches_keeps_each_batch_whole_and_retries_store_every_event_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = cluster.create_database("crash")
    source, admin = make_keys(url, Role.SOURCE, Role.ADMIN)
    batches = [batch_events(b) for b in range(BATCHES)]
    server = start_server(url, tmp_path / "before.log", workers=2, new_session=True)
    answered: dict[int, int] = {}
    first_answer = threading.Event()

    def post(batch: int) -> None:
        try:
            with httpx.Client(base_url=server.base_url, headers=bearer(source), timeout=120) as http:
                response = http.post("/v1/events/batch", json={"events": batches[batch]})
            answered[batch] = response.status_code
            first_answer.set()
        except httpx.TransportError:
            pass  # the server died under it

    try:
        with ThreadPoolExecutor(BATCHES) as pool:
            futures = [pool.submit(post, b) for b in range(BATCHES)]
            first_answer.wait(timeout=120)
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=30)
            for future in futures:
                future.result(timeout=150)
    finally:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGKILL)
    assert set(answered.values()) <= {200}
    assert 0 < len(answered) < BATCHES, f"the kill must land while batches are in flight ({len(answered)} answered)"

    stored = [count_events(url, [e["source_event_id"] for e in events]) for events in batches]
    assert set(stored) <= {0, BATCH_SIZE}, f"a batch was stored in part: {stored}"
    assert all(stored[b] == BATCH_SIZE for b in answered), "a batch answered 200 was lost"

    again = start_server(url, tmp_path / "after.log", workers=2)
    try:
        with httpx.Client(base_url=again.base_url, timeout=120) as http:
            for b, events in enumerate(batches):
                response = http.post("/v1/events/batch", json={"events": events}, headers=bearer(source))
                assert response.status_code == 200, response.text
                duplicates = {item["duplicate"] for item in response.json()["items"]}
                assert duplicates == {stored[b] == BATCH_SIZE}, f"batch {b}: stored {stored[b]}, answered {duplicates}"
            verify = http.get("/v1/audit/verify", headers=bearer(admin)).json()
            scan = http.post("/v1/scans", json={}, headers=bearer(admin)).json()
    finally:
        stop_server(again)
    assert count_events(url) == BATCHES * BATCH_SIZE
    assert verify["ok"] is True, verify
    assert scan["windows_repaired"] == 0, "the rules' running figures lost or doubled events in the crash"


@dataclass
class Answers:
    """What one client saw: (status, seconds, Retry-After, duplicate, time) per answer, and transport errors."""

    seen: list[tuple[int, float, str | None, bool, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)


def post_until(server: Server, key: str, client: int, stop: threading.Event) -> Answers:
    """Posts new events one after another; after a 503 it waits Retry-After and sends the same event again."""
    answers = Answers()
    with httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=HANG) as http:
        for n in range(5000):  # bounded, whatever happens
            if stop.is_set():
                break
            event = make_event(source_event_id=f"OUTAGE-{client}-{n:05d}")
            for _ in range(60):
                started = time.monotonic()
                try:
                    response = http.post("/v1/events", json=event)
                except httpx.TransportError as exc:
                    answers.errors.append(f"{type(exc).__name__} after {time.monotonic() - started:.1f} s")
                    time.sleep(0.5)
                    continue
                elapsed = time.monotonic() - started
                duplicate = response.status_code == 200 and response.json().get("duplicate") is True
                retry_after = response.headers.get("retry-after")
                answers.seen.append((response.status_code, elapsed, retry_after, duplicate, time.monotonic()))
                if response.status_code in (200, 201):
                    answers.stored.append(event["source_event_id"])
                    break
                if response.status_code != 503:
                    break
                time.sleep(min(float(retry_after or 1), 2))
            time.sleep(0.02)
    return answers


def test_a_database_restart_under_load_answers_201_or_503_and_the_service_recovers_by_itself(
    cluster: Cluster, tmp_path: Path
) -> None:
    url = cluster.create_database("outage")
    (source,) = make_keys(url, Role.SOURCE)
    server = start_server(url, tmp_path / "server.log", workers=2)
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(post_until, server, source, c, stop) for c in range(CLIENTS)]
            time.sleep(2)
            restart_began = time.monotonic()
            cluster.ctl("-m", "fast", "-w", "-t", "60", "restart")
            back = time.monotonic()
            time.sleep(4)  # the clients go on posting on the database that is back
            stop.set()
            results = [future.result(timeout=120) for future in futures]
        ready = httpx.get(f"{server.base_url}/readyz", timeout=HANG).status_code
    finally:
        stop.set()
        stop_server(server)

    seen = [answer for result in results for answer in result.seen]
    statuses = {status for status, *_ in seen}
    assert not [e for r in results for e in r.errors], f"requests failed without an answer: {results[0].errors}"
    assert statuses <= {200, 201, 503}, f"answers other than 201/503: {sorted(statuses)}"
    assert all(duplicate for status, _, _, duplicate, _ in seen if status == 200), "a 200 that is not a resend"
    assert all(retry for status, _, retry, _, _ in seen if status == 503), "a 503 without Retry-After"
    slowest = max(elapsed for _, elapsed, *_ in seen)
    assert slowest < HANG, f"an answer took {slowest:.1f} s"
    for result in results:
        after = [status for status, _, _, _, at in result.seen if at > back]
        assert 201 in after, f"a client had no event stored after the database came back: {after}"
    assert ready == 200
    assert any(at < restart_began for *_, at in seen), "no event was posted before the restart"
    stored = [event_id for result in results for event_id in result.stored]
    assert count_events(url) == len(stored) == len(set(stored))
