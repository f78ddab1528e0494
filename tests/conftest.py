"""Test set-up: one database per run, built only by `alembic upgrade head`, emptied after every test.

The suite runs on SQLite by default and on PostgreSQL when SUPERVISION_TEST_DATABASE_URL names a
server (e.g. postgresql://postgres@127.0.0.1:5432/test): a fresh database is created beside the named
one for the run and dropped after it. If that server cannot be reached the run fails; it never skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.auth.service import Role, create_key
from app.config import Settings, normalize_database_url
from app.db import Database
from app.main import create_app
from app.migrate import upgrade_head
from app.models import Base
from app.units.service import forget_units
from app.webhooks.outbox import forget_webhooks

TEST_DB_ENV = "SUPERVISION_TEST_DATABASE_URL"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get(TEST_DB_ENV)
    if not configured:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    admin_url = make_url(normalize_database_url(configured))
    name = f"supervision_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here must stop the run, loudly
        pytest.exit(f"{TEST_DB_ENV}={configured} is set but PostgreSQL cannot be used: {exc}", returncode=3)
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    upgrade_head(normalize_database_url(database_url))
    return database_url


@pytest.fixture(scope="session")
def settings(migrated: str) -> Settings:
    return Settings(database_url=migrated, bootstrap_admin_key=None)


@pytest.fixture(scope="session")
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings)
    yield database
    database.dispose()


def empty_tables(database: Database) -> None:
    """Delete every row of every table (the schema stays), and what this process remembers of them."""
    forget_units()
    forget_webhooks()
    # Events first: a trigger (migration 0008), not a foreign key the sort would see, keeps a unit they name.
    tables = sorted((table.name for table in reversed(Base.metadata.sorted_tables)), key=lambda name: name != "events")
    with database.session(write=True) as session:
        if database.dialect == "postgresql":
            session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                session.execute(text(f"DELETE FROM {table}"))
            if session.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
                session.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts from empty tables (the schema stays)."""
    yield
    if "db" in request.fixturenames:
        empty_tables(request.getfixturevalue("db"))


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client


KeyMaker = Callable[..., str]


@pytest.fixture
def make_key(db: Database) -> KeyMaker:
    def make(role: str, name: str | None = None, unit: str | None = None) -> str:
        with db.session(write=True) as session:
            created = create_key(session, name=name or f"{role}-key", role=Role(role), unit_id=unit)
            return created.secret

    return make


@pytest.fixture
def source_key(make_key: KeyMaker) -> str:
    return make_key("source", "vr-system")


@pytest.fixture
def inspector_key(make_key: KeyMaker) -> str:
    return make_key("inspector", "inspector-wang")


@pytest.fixture
def admin_key(make_key: KeyMaker) -> str:
    return make_key("admin", "admin")


@dataclass(frozen=True)
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    database_url: str,
    log: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    new_session: bool = False,
    ready_timeout: float = 30,
) -> Server:
    """`supervision serve` as a deployment runs it, on a free loopback port; waits until ready.

    `new_session`: the server and its workers get a process group of their own, so a test can kill
    them all at once (`os.killpg`)."""
    port = free_port()
    environment = {**os.environ, "SUPERVISION_DATABASE_URL": database_url, **(env or {})}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env=environment,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return Server(base_url=base_url, process=process, log=log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server not ready in {ready_timeout:.0f} s:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(migrated: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real uvicorn server (two workers) on the test database, shared by the end-to-end tests. It sends no
    webhooks: alive for the rest of the session, its senders would take the deliveries that later tests
    (tests/webhooks) drive themselves."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = start_server(migrated, log, workers=2, env={"SUPERVISION_WEBHOOK_DELIVERY": "false"})
    yield running
    stop_server(running)
