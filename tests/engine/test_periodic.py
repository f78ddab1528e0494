"""The periodic scan (SUPERVISION_SCAN_INTERVAL) runs once per period however many workers there are."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import Settings
from app.db import Database
from app.scans.models import Scan
from app.scans.service import claim
from tests.conftest import start_server, stop_server


@pytest.fixture
def databases(settings: Settings, db: Database) -> Iterator[list[Database]]:
    others = [Database(settings) for _ in range(3)]
    yield [db, *others]
    for other in others:
        other.dispose()


def test_exactly_one_claimant_wins_each_period(databases: list[Database]) -> None:
    every = timedelta(minutes=10)
    start = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    for moment, winners in [
        (start, 1),  # the first period: one of the four runs it
        (start + timedelta(minutes=5), 0),  # still in that period: nobody
        (start + timedelta(minutes=10), 1),  # the next one: one again
    ]:
        barrier = threading.Barrier(len(databases))

        def attempt(database: Database, at: datetime = moment, wait: threading.Barrier = barrier) -> bool:
            wait.wait()
            return claim(database, name="test-job", every=every, holder="t", now=at)

        with ThreadPoolExecutor(len(databases)) as pool:
            assert sum(pool.map(attempt, databases)) == winners, moment


def test_a_two_worker_server_scans_once_per_period(migrated: str, db: Database, tmp_path: Path) -> None:
    server = start_server(migrated, tmp_path / "server.log", workers=2, env={"SUPERVISION_SCAN_INTERVAL": "2s"})
    try:
        time.sleep(7.5)
    finally:
        stop_server(server)
    with db.session() as session:
        scans = list(session.scalars(select(Scan).where(Scan.trigger == "periodic").order_by(Scan.started_at)))
    assert 1 <= len(scans) <= 4, [s.started_at for s in scans]
    assert all(s.status == "done" for s in scans)
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in zip(scans, scans[1:], strict=False)]
    assert all(gap >= 1.9 for gap in gaps), gaps  # never two workers in one period
