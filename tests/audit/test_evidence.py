"""Events as evidence: stored content hashes, checkpoints, and events changed or deleted afterwards."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from app.audit import evidence, service
from app.audit.chain import event_content, event_hash
from app.audit.models import AuditEntry
from app.db import Database
from app.events import service as events_service
from app.events.models import Event
from app.events.schemas import EventIn
from app.jsonutil import canonical_hash
from tests.audit.helpers import only_postgresql, record_some, verdict
from tests.factories import auxiliary, bearer, make_event


def post_events(client: TestClient, key: str, bodies: list[dict[str, Any]]) -> list[int]:
    response = client.post("/v1/events/batch", json={"events": bodies}, headers=bearer(key))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def some_events(count: int) -> list[dict[str, Any]]:
    return [make_event(occurred_at=f"2026-11-21T09:{i % 60:02d}:00+08:00") for i in range(count)]


def varied_events() -> list[dict[str, Any]]:
    """Events of every domain, with and without the optional fields, and awkward attributes."""
    staff = {"id": "S-01", "kind": "staff", "unit": "窗口-3"}
    staff_with_officer = {**staff, "id": "S-02", "responsible_officer": "P2002"}
    bodies = [
        make_event(),
        make_event(operator=auxiliary(), business_unit=None, agent_id=None, object_ref=None),
        make_event(operator=staff, attributes={"vehicle_type": "car", "备注": "加急办理", "tags": ["a", "b"]}),
        make_event(operator=staff_with_officer, occurred_at="2026-11-21T23:59:59.999999-05:30"),
        make_event(occurred_at="2026-03-01T00:00:00.000001Z", attributes={"vehicle_type": "truck", "n": None}),
        make_event(
            domain="driver_testing",
            action="exam",
            business_unit={"id": "EX-1", "kind": "exam_site"},
            attributes={"subject": 2, "result": "fail", "score": 59.5},
        ),
        make_event(
            domain="driver_testing",
            action="exam",
            attributes={"subject": 4, "result": "pass", "score": 100.0, "retries": 0},
        ),
        make_event(
            domain="vehicle_inspection",
            action="inspection",
            business_unit={"id": "IS-07", "kind": "inspection_station"},
            attributes={"result": "pass", "duration_seconds": 0.1, "vehicle_type": "new_energy"},
        ),
        make_event(domain="accident_handling", action="case_opened", attributes={}),
        make_event(domain="accident_handling", action="case_closed", attributes={"closure": "mediated"}),
        make_event(
            domain="violation_handling",
            action="penalty_issued",
            attributes={"fine_amount": 200, "points": 3, "nested": {"z": 1, "a": [1.5e-7, 1e21, -0.0, 1e300]}},
        ),
        make_event(
            domain="violation_handling",
            action="record_deleted",
            attributes={"fine_amount": 9007199254740991, "points": 0, "\U0001f600": "astral key", "\ue000": "pua"},
        ),
    ]
    return bodies + [make_event(attributes={"vehicle_type": "motorcycle", "i": i, "f": i / 7}) for i in range(20)]


def test_every_stored_event_gives_its_content_hash_back_from_its_columns(
    db: Database, bare: TestClient, source_key: str
) -> None:
    ids = post_events(bare, source_key, varied_events())
    with db.session() as session:
        rows = session.execute(select(evidence.EVENTS).order_by(evidence.EVENTS.c.id)).mappings().all()
    assert [row["id"] for row in rows] == ids
    for row in rows:
        assert event_hash(row) == row["content_hash"], row["source_event_id"]


def test_a_checkpoint_counts_and_hashes_the_events_stored_so_far(
    db: Database, bare: TestClient, source_key: str
) -> None:
    ids = post_events(bare, source_key, some_events(7))
    entry = service.take_checkpoint(db, actor="admin")
    with db.session() as session:
        hashes = session.scalars(select(Event.content_hash).order_by(Event.id)).all()
    assert entry.action == "checkpoint"
    assert entry.object_type == "events"
    assert entry.object_id == str(ids[-1])
    assert entry.seq is not None
    assert entry.data == {
        "events": 7,
        "last_event_id": ids[-1],
        "hash": hashlib.sha256("".join(hashes).encode()).hexdigest(),
    }
    assert verdict(db).ok


def test_a_checkpoint_of_no_events(db: Database) -> None:
    entry = service.take_checkpoint(db, actor="admin")
    assert entry.data == {"events": 0, "last_event_id": 0, "hash": hashlib.sha256().hexdigest()}
    assert verdict(db).ok


def test_a_checkpoint_taken_inside_a_transaction(db: Database, bare: TestClient, source_key: str) -> None:
    post_events(bare, source_key, some_events(3))
    with db.session(write=True) as session:
        entry = service.checkpoint(session, actor="cli:ops")
    assert entry.data["events"] == 3
    assert verdict(db).ok


def test_an_event_deleted_and_another_edited_after_a_checkpoint_are_both_caught(
    db: Database, bare: TestClient, source_key: str
) -> None:
    ids = post_events(bare, source_key, some_events(10))
    point = service.take_checkpoint(db, actor="admin")
    record_some(db, 3)
    post_events(bare, source_key, some_events(2))  # after the checkpoint: not covered by it
    with db.session(write=True) as session:
        session.execute(delete(Event).where(Event.id == ids[3]))
        session.execute(update(Event).where(Event.id == ids[7]).values(operator_id="P9999"))
    found = verdict(db)
    assert not found.ok
    assert found.first_mismatch == point.id
    assert found.reason is not None
    assert "9 events are stored where 10 were counted" in found.reason
    assert f"event {ids[7]} no longer matches its content_hash" in found.reason
    assert found.changed_events == [ids[7]]


def test_an_event_deleted_after_a_checkpoint_is_caught(db: Database, bare: TestClient, source_key: str) -> None:
    ids = post_events(bare, source_key, some_events(5))
    point = service.take_checkpoint(db, actor="admin")
    with db.session(write=True) as session:
        session.execute(delete(Event).where(Event.id == ids[-1]))  # even the newest
    found = verdict(db)
    assert (found.ok, found.first_mismatch) == (False, point.id)
    assert found.changed_events == []


def test_an_event_edited_with_its_content_hash_recomputed_is_caught(
    db: Database, bare: TestClient, source_key: str
) -> None:
    ids = post_events(bare, source_key, some_events(5))
    point = service.take_checkpoint(db, actor="admin")
    with db.session(write=True) as session:
        row = session.execute(select(evidence.EVENTS).where(Event.id == ids[2])).mappings().one()
        forged = {**row, "attributes": {"vehicle_type": "car"}}
        session.execute(
            update(Event)
            .where(Event.id == ids[2])
            .values(attributes=forged["attributes"], content_hash=canonical_hash(event_content(forged)))
        )
    found = verdict(db)
    assert (found.ok, found.first_mismatch) == (False, point.id)
    assert found.reason is not None
    assert "the hash over their content hashes differs" in found.reason
    assert found.changed_events == []


def test_the_first_checkpoint_covering_a_changed_event_is_named(
    db: Database, bare: TestClient, source_key: str
) -> None:
    first = post_events(bare, source_key, some_events(4))
    early = service.take_checkpoint(db, actor="admin")
    later_ids = post_events(bare, source_key, some_events(4))
    late = service.take_checkpoint(db, actor="admin")
    with db.session(write=True) as session:
        session.execute(update(Event).where(Event.id == later_ids[1]).values(action="transfer"))
    assert verdict(db).first_mismatch == late.id
    with db.session(write=True) as session:
        session.execute(update(Event).where(Event.id == first[0]).values(object_ref="湘J00000"))
    found = verdict(db)
    assert found.first_mismatch == early.id
    assert found.changed_events == [first[0], later_ids[1]]


def test_a_changed_entry_before_a_checkpoint_is_named_first(db: Database, bare: TestClient, source_key: str) -> None:
    ids = post_events(bare, source_key, some_events(3))
    point = service.take_checkpoint(db, actor="admin")
    (after,) = record_some(db, 1)
    with db.session(write=True) as session:
        session.execute(delete(Event).where(Event.id == ids[0]))
    assert verdict(db).first_mismatch == point.id
    assert after > point.id


def test_events_stored_after_the_last_checkpoint_are_not_a_mismatch(
    db: Database, bare: TestClient, source_key: str
) -> None:
    post_events(bare, source_key, some_events(3))
    service.take_checkpoint(db, actor="admin")
    post_events(bare, source_key, some_events(3))
    assert verdict(db).ok


# PostgreSQL: ids are drawn before commit, so a checkpoint waits for the transactions writing events.


def test_a_checkpoint_waits_for_events_still_being_written(db: Database, bare: TestClient, source_key: str) -> None:
    only_postgresql(db)
    post_events(bare, source_key, some_events(1))
    written, release = threading.Event(), threading.Event()

    def slow_ingest() -> None:
        with db.session(write=True) as session:
            events_service.ingest(session, source="slow-system", events=[EventIn.model_validate(make_event())])
            written.set()
            release.wait(timeout=30)

    writer = threading.Thread(target=slow_ingest)
    writer.start()
    taken: list[AuditEntry] = []
    try:
        assert written.wait(timeout=10)
        post_events(bare, source_key, some_events(1))  # a later id, committed first
        checkpointer = threading.Thread(target=lambda: taken.append(service.take_checkpoint(db, actor="admin")))
        checkpointer.start()
        time.sleep(0.5)
        assert checkpointer.is_alive(), "the checkpoint did not wait for the open transaction"
    finally:
        release.set()
        writer.join(timeout=30)
    checkpointer.join(timeout=30)
    (entry,) = taken
    assert entry.data["events"] == 3
    assert verdict(db).ok


def test_a_checkpoint_gives_up_on_a_writer_that_does_not_finish(db: Database) -> None:
    only_postgresql(db)
    written, release = threading.Event(), threading.Event()

    def stuck_ingest() -> None:
        with db.session(write=True) as session:
            events_service.ingest(session, source="stuck-system", events=[EventIn.model_validate(make_event())])
            written.set()
            release.wait(timeout=30)

    writer = threading.Thread(target=stuck_ingest)
    writer.start()
    try:
        assert written.wait(timeout=10)
        with pytest.raises(evidence.EventsBusy):
            service.take_checkpoint(db, actor="admin", wait=0.2)
    finally:
        release.set()
        writer.join(timeout=30)
    assert service.take_checkpoint(db, actor="admin").data["events"] == 1
