"""Each process remembers the org units it has seen stored and skips registering them again; a unit that
vanished behind its back (a hand-made DELETE) is registered again, and the event is stored."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.db import Database
from tests.factories import bearer, make_event


def test_a_unit_deleted_behind_the_service_is_registered_again(
    client: TestClient, db: Database, source_key: str, inspector_key: str
) -> None:
    operator = {"id": "P7", "kind": "police", "unit": "GONE-1", "responsible_officer": None}
    assert client.post("/v1/events", json=make_event(operator=operator), headers=bearer(source_key)).status_code == 201
    with db.session(write=True) as session:  # the unit (and what referred to it) removed by hand
        session.execute(text("DELETE FROM events"))
        session.execute(text("DELETE FROM units WHERE id = 'GONE-1'"))
    response = client.post("/v1/events", json=make_event(operator=operator), headers=bearer(source_key))
    assert response.status_code == 201, response.text
    unit = client.get("/v1/units/GONE-1", headers=bearer(inspector_key))
    assert unit.status_code == 200
    assert unit.json()["registered_by"] == "event"


def test_a_unit_named_by_stored_events_cannot_be_deleted_nor_an_event_name_an_unknown_unit(
    client: TestClient, db: Database, source_key: str
) -> None:
    """What the foreign key guaranteed, kept by triggers that take no lock (migration 0008)."""
    operator = {"id": "P8", "kind": "police", "unit": "KEPT-1", "responsible_officer": None}
    assert client.post("/v1/events", json=make_event(operator=operator), headers=bearer(source_key)).status_code == 201
    with pytest.raises(IntegrityError), db.session(write=True) as session:
        session.execute(text("DELETE FROM units WHERE id = 'KEPT-1'"))
    with pytest.raises(IntegrityError), db.session(write=True) as session:
        session.execute(text("UPDATE events SET operator_unit = 'NEVER-REGISTERED'"))
    with db.session() as session:
        assert session.execute(text("SELECT operator_unit FROM events")).scalars().all() == ["KEPT-1"]
        assert session.execute(text("SELECT id FROM units WHERE id = 'KEPT-1'")).scalar_one() == "KEPT-1"
