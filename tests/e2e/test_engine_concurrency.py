"""The rule engine under concurrency: many connections to a real two-worker server crossing one
threshold at once give one alert with the right value, one breaker and one trip; two scans running
at once in two processes write each alert once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import func, select

from app.alerts.models import Alert
from app.breakers.models import Breaker, BreakerChange
from app.db import Database
from app.events import service as event_service
from app.events.schemas import EventIn
from tests.conftest import ROOT, KeyMaker, Server
from tests.factories import bearer, make_event

pytestmark = pytest.mark.e2e

N = 40  # vr-bulk-new-energy: warn_at 15, trip_at 30 in an hour


def registrations(operator: str, n: int = N, hour: str = "10") -> list[dict[str, Any]]:
    return [
        make_event(
            source_event_id=f"{operator}-{i:03d}",
            occurred_at=f"2026-11-21T{hour}:{i % 60:02d}:00+08:00",
            operator={"id": operator, "kind": "police", "unit": "ZD-CGS", "responsible_officer": None},
            agent_id=None,
            attributes={"vehicle_type": "new_energy"},
        )
        for i in range(n)
    ]


def rows(db: Database, model: Any, **where: Any) -> list[Any]:
    with db.session() as session:
        found = list(session.scalars(select(model).filter_by(**where)))
        session.expunge_all()
    return found


def assert_one_alert_and_one_trip(db: Database, operator: str) -> Alert:
    (alert,) = rows(db, Alert, rule_id="vr-bulk-new-energy", subject_id=operator)
    assert isinstance(alert, Alert)
    assert (alert.value, alert.hits, alert.tripped, alert.cleared) == (N, N, True, False)
    assert len(alert.evidence["event_ids"]) == N
    (breaker,) = rows(db, Breaker, rule_id="vr-bulk-new-energy", subject_id=operator)
    assert breaker.state == "open"
    assert len(rows(db, BreakerChange, breaker_id=breaker.id)) == 1
    return alert


def test_sixteen_connections_crossing_one_threshold_raise_one_alert(
    server: Server, make_key: KeyMaker, db: Database
) -> None:
    key = make_key("source", "vr-system")
    events = registrations("P9001")
    barrier = threading.Barrier(16)

    def post_share(worker: int) -> list[dict[str, Any]]:
        answers = []
        with httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=60) as http:
            barrier.wait()
            for event in events[worker::16]:
                response = http.post("/v1/events", json=event)
                assert response.status_code == 201, response.text
                answers.append(response.json())
        return answers

    with ThreadPoolExecutor(16) as pool:
        answers = [a for share in pool.map(post_share, range(16)) for a in share]
    alert = assert_one_alert_and_one_trip(db, "P9001")
    # Every event from the 15th on raised or updated that alert, and was told so.
    assert Counter(a["alerts"] == [alert.id] for a in answers) == {True: N - 14, False: 14}
    # Once the breaker opened every later answer is blocked; at least the last ones were.
    assert any(a["blocked"] for a in answers)
    assert all(b["subject_id"] == "P9001" for a in answers for b in a["breakers"])


def test_concurrent_batches_crossing_one_threshold_raise_one_alert(
    server: Server, make_key: KeyMaker, db: Database
) -> None:
    key = make_key("source", "vr-system")
    events = registrations("P9002")
    batches = [events[i::8] for i in range(8)]
    barrier = threading.Barrier(8)

    def post(batch: list[dict[str, Any]]) -> int:
        with httpx.Client(base_url=server.base_url, headers=bearer(key), timeout=60) as http:
            barrier.wait()
            return http.post("/v1/events/batch", json={"events": batch}).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, batches)) == {200}
    assert_one_alert_and_one_trip(db, "P9002")


def test_two_scans_at_once_in_two_processes_write_each_alert_once(migrated: str, db: Database, tmp_path: Any) -> None:
    # Stored without evaluation (as if the rule had been added afterwards): the scans find them.
    for operator in ("P9101", "P9102", "P9103"):
        parsed = [EventIn.model_validate(body) for body in registrations(operator)]
        with db.session(write=True) as session:
            event_service.ingest(session, source="vr-system", events=parsed, batch=True)
    env = {**os.environ, "SUPERVISION_DATABASE_URL": migrated}
    command = [sys.executable, "-m", "app", "scan"]
    scans = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"]
    outputs = [scan.communicate(timeout=120) for scan in scans]
    assert [scan.returncode for scan in scans] == [0, 0], outputs
    for operator in ("P9101", "P9102", "P9103"):
        assert_one_alert_and_one_trip(db, operator)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Alert)) == 3
