"""`supervision audit verify` and `supervision audit checkpoint`, run as an operator runs them."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from app.audit.models import AuditEntry
from app.db import Database
from app.events.models import Event
from tests.audit.helpers import entries, record_some, tampering
from tests.auth.test_cli import supervision
from tests.factories import bearer, make_event


def test_verify_exits_0_on_an_intact_chain(migrated: str, db: Database) -> None:
    record_some(db, 4)
    record_some(db, 2, seal=False)
    done = supervision(migrated, "audit", "verify")
    assert done.returncode == 0, done.stderr
    total = len(entries(db))
    assert f"ok: {total} entries checked" in done.stdout
    assert f"head seq {total}" in done.stdout


def test_verify_exits_1_naming_the_first_bad_entry(migrated: str, db: Database) -> None:
    ids = record_some(db, 5)
    with tampering(db) as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == ids[1]).values(actor="forger"))
    done = supervision(migrated, "audit", "verify")
    assert done.returncode == 1
    assert f"MISMATCH at entry {ids[1]}" in done.stdout


def test_checkpoint_then_verify_finds_a_deleted_event(
    migrated: str, db: Database, client: TestClient, source_key: str
) -> None:
    ids = [client.post("/v1/events", json=make_event(), headers=bearer(source_key)).json()["id"] for _ in range(3)]
    done = supervision(migrated, "audit", "checkpoint")
    assert done.returncode == 0, done.stderr
    assert f"3 events up to id {ids[-1]}" in done.stdout
    (point,) = [e for e in entries(db) if e.action == "checkpoint"]
    assert point.actor.startswith("cli:")
    assert supervision(migrated, "audit", "verify").returncode == 0

    with db.session(write=True) as session:
        session.execute(delete(Event).where(Event.id == ids[0]))
    done = supervision(migrated, "audit", "verify")
    assert done.returncode == 1
    assert f"MISMATCH at entry {point.id}" in done.stdout
    assert "2 events are stored where 3 were counted" in done.stdout


def test_audit_without_a_command_shows_help(migrated: str) -> None:
    done = supervision(migrated, "audit")
    assert "verify" in done.stdout + done.stderr
    assert "checkpoint" in done.stdout + done.stderr
